"""How uvicorn runs the app: uvloop, httptools and a bounded request head.

uvloop and httptools are uvicorn's own speedups (its ``standard`` extra). On
this service's benchmark they serve a constant route at 2.3 times and a cached
gzip aggregate at 1.6 times the requests per second of asyncio and h11.

h11 bounds a request head that never ends (``h11_max_incomplete_event_size``);
httptools does not, so :class:`BoundedHead` does: past :data:`MAX_HEAD_BYTES`
of one head, the connection gets a 431 and is closed. Heads below that reach
:func:`kenbun_analytics.guard.guard`, which answers anything over its much
smaller limits with the usual JSON error.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kenbun_analytics.guard import MAX_HEAD_BYTES
from kenbun_analytics.schemas import ErrorBody, json_encoder

_TOO_LARGE = json_encoder.encode(
    ErrorBody(
        status=431,
        detail=f"the request head is longer than {MAX_HEAD_BYTES} bytes: "
        "send fewer or shorter headers",
    )
)


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, reading at most :data:`MAX_HEAD_BYTES` of a head.

    A read that leaves a head incomplete counts whole, so the bound holds to
    within one read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)  # the head is still incomplete after this read
        if self._head_bytes > MAX_HEAD_BYTES:
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json\r\n"
                b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + _TOO_LARGE
            )
            self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """The uvicorn settings ``serve`` runs with; the tests' live server and the
    benchmark server use the same."""
    return {
        "loop": "uvloop",
        "http": BoundedHead,
        "log_config": None,  # our JSON lines; see observability.configure_logging
        "access_log": False,  # the app writes its own access line, with the request id
        "proxy_headers": False,
        "lifespan": "on",
    }
