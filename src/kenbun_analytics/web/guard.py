"""Request limits checked before routing: the shape of the request line and headers.

The endpoints take a few short parameters, repeatable filter values and a
handful of headers. The query string's limit leaves room for a dashboard's
filter list (a hundred percent-encoded campaign names in another script fit)
and matches what common proxies and load balancers pass by default; anything
larger is a mistake or an attack, and is answered before any work with the same
JSON error body as every other 4xx.
"""

from __future__ import annotations

from typing import Any

from kenbun_analytics.web.schemas import ErrorBody, json_encoder

MAX_PATH_BYTES = 8 * 1024
MAX_QUERY_BYTES = 16 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_BODY_BYTES = 16 * 1024
DRAIN_BYTES = 1024 * 1024
"""How much of a rejected request's body is read (and dropped) before answering."""
SINGLE_HEADERS = (b"authorization", b"x-org-unit-id")
MAX_HEAD_BYTES = 128 * 1024
"""How much of a request head the HTTP server reads (see
:class:`kenbun_analytics.web.serving.BoundedHead`): well above the limits here, so
that an oversized head is read whole and answered by :func:`guard`. A server
that gives up mid-head closes with unread bytes, which resets the connection
and can lose its answer on the way."""


def _rejection(scope: dict[str, Any]) -> tuple[int, str] | None:
    # Some ASGI clients (httpx's transport among them) leave the query on raw_path.
    path = (scope.get("raw_path") or b"").partition(b"?")[0]
    if len(path) > MAX_PATH_BYTES:
        return 414, f"the path is longer than {MAX_PATH_BYTES} bytes"
    if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
        return 414, (
            f"the query string is longer than {MAX_QUERY_BYTES} bytes: "
            "send fewer or shorter filter values and names"
        )
    return _header_rejection(scope.get("headers", []))


def _header_rejection(headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
    if len(headers) > MAX_HEADERS:
        return 431, f"more than {MAX_HEADERS} request headers"
    if sum(len(name) + len(value) + 4 for name, value in headers) > MAX_HEADER_BYTES:
        return 431, f"the request headers are larger than {MAX_HEADER_BYTES} bytes"
    for single in SINGLE_HEADERS:
        if sum(1 for name, _ in headers if name == single) > 1:
            return 400, f"send the {single.decode()} header once"
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            return 413, f"the request body is larger than {MAX_BODY_BYTES} bytes"
    return None


async def _drain(receive: Any) -> None:
    """Read what the client sent of a rejected request's body (up to
    :data:`DRAIN_BYTES`): the server then closes a connection with nothing
    unread, which a client sees as a clean end rather than a reset that can
    lose the answer."""
    drained = 0
    while drained <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def guard(app: Any) -> Any:
    """Wrap an ASGI app: oversized or ambiguous requests get a 4xx before routing."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or (rejection := _rejection(scope)) is None:
            await app(scope, receive, send)
            return
        status, detail = rejection
        await _drain(receive)
        body = json_encoder.encode(ErrorBody(status=status, detail=detail))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return guarded
