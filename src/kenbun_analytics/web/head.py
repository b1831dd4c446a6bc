"""HEAD answered as GET without the body (RFC 9110, section 9.3.2).

Litestar sends a HEAD only to a handler declared for it, so every GET route
would answer it 405. :func:`answer_head` runs a HEAD request as the GET of the
same target and sends that GET's status and headers, ``Content-Length``,
``ETag`` and all, without the body bytes: every route, the pages and assets,
the cached hits answered before routing, the guard's rejections, 304s and
errors alike. It sits inside :func:`kenbun_analytics.web.observability.observe`,
whose access line and metrics keep the method HEAD.

Whatever allows GET allows HEAD too: an ``Allow`` header (a 405, an OPTIONS
answer) that lists GET lists HEAD.
"""

from __future__ import annotations

from typing import Any


def _allow_head(value: bytes) -> bytes:
    """HEAD added where GET is allowed; in alphabetical order, where Litestar's
    order changes from one process to the next."""
    methods = {method.strip() for method in value.split(b",")}
    if b"GET" in methods:
        methods.add(b"HEAD")
    return b", ".join(sorted(methods))


def _with_head_allowed(message: dict[str, Any]) -> dict[str, Any]:
    headers = message.get("headers", [])
    if not any(name == b"allow" for name, _ in headers):
        return message
    allowed = [(name, _allow_head(value) if name == b"allow" else value) for name, value in headers]
    return {**message, "headers": allowed}


def answer_head(app: Any) -> Any:
    """Wrap an ASGI app: a HEAD is answered as its GET without the body, and an
    Allow header naming GET names HEAD. A GET passes straight through: an Allow
    header answering a GET cannot name GET (the route would have taken it)."""

    async def heads(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] == "GET":
            await app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        # A HEAD's own scope says GET; the server's still says HEAD, so the server
        # sends no body and expects none, whatever Content-Length the GET gives.
        inner = {**scope, "method": "GET"} if head else scope

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = _with_head_allowed(message)
            elif head and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        try:
            await app(inner, receive, sending)
        finally:
            if "path_template" in inner:  # the route label of the request metrics
                scope["path_template"] = inner["path_template"]

    return heads
