"""The HTTP side: the Litestar app and everything between a request and the engine.

``app`` composes the routes (``analytics``, ``org_units``, ``health``) with the
ASGI layers around them (``observability`` outermost, then ``guard`` and the
pre-routing ``hits``). ``context`` gives each handler its services and caller,
``params`` parses, ``answers`` runs the engine's queries, ``responses`` sends
cached answers with their ETag, and ``problems`` maps domain errors to statuses.
"""
