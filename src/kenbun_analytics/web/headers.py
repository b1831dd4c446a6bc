"""The security headers every response carries.

:func:`kenbun_analytics.web.observability.observe`, the outermost ASGI layer, adds
them to every answer of the app (pages, assets, API answers, errors, 304s, the
cached hits sent before routing and the guard's rejections), and
:class:`kenbun_analytics.web.serving.BoundedHead` to the few answers the HTTP server
writes itself. Nothing else sets them, so each is sent exactly once.

- ``Content-Security-Policy``: scripts, styles and everything else only from
  this origin, no inline script or style, never framed, no ``<base>``, forms
  post only here.
- ``X-Content-Type-Options: nosniff``: a JSON answer is never run as a script
  or rendered as a page.
- ``Referrer-Policy: no-referrer``: the page's URLs (org unit choices, campaign
  names) never reach another site.
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
"""The headers as ASGI sends them: lower-case names, in this order."""

SECURITY_HEAD_LINES = b"".join(name + b": " + value + b"\r\n" for name, value in SECURITY_HEADERS)
"""The same headers as lines of a raw HTTP/1.1 response head."""
