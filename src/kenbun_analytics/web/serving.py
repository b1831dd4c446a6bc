"""How uvicorn runs the app: uvloop, httptools, a bounded request head, and a
response's head and body in one write.

uvloop and httptools are uvicorn's own speedups (its ``standard`` extra). On
this service's benchmark they serve a constant route at 2.3 times and a cached
gzip aggregate at 1.6 times the requests per second of asyncio and h11.

h11 bounds a request head that never ends (``h11_max_incomplete_event_size``);
httptools does not, so :class:`BoundedHead` does: past :data:`MAX_HEAD_BYTES`
of one head, the connection gets a 431 and is closed. Heads below that reach
:func:`kenbun_analytics.web.guard.guard`, which answers anything over its much
smaller limits with the usual JSON error.

:class:`CoalescedWrites` sends a response's head with its body, one ``writev``
and fewer packets where uvicorn makes two writes, which matters most for small
cached answers (benchmarks/README.md has the figures).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kenbun_analytics.web.guard import MAX_HEAD_BYTES
from kenbun_analytics.web.headers import SECURITY_HEAD_LINES
from kenbun_analytics.web.schemas import ErrorBody, json_encoder

_TOO_LARGE = json_encoder.encode(
    ErrorBody(
        status=431,
        detail=f"the request head is longer than {MAX_HEAD_BYTES} bytes: "
        "send fewer or shorter headers",
    )
)


HELD_BYTES = 16 * 1024
"""A write this short (a response head, or a whole small response) waits for the
next write of the same turn of the event loop, to go out in the same ``writev``."""


class CoalescedWrites(asyncio.Transport):
    """A transport that sends a response's head and body in one system call.

    uvicorn writes a response's head as soon as the app starts the response and
    its body when the app sends it, two ``write`` calls and two packets, though
    the app sends both in the same turn of the event loop. This holds a short
    write until the next one, or until the end of that turn, and sends what it
    holds with the next in one ``writelines`` (uvloop's ``writev``). At most
    one write is held, so nothing is ever buffered here beyond a head's size,
    and the order of the bytes is unchanged.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._held: bytes | None = None
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.writelines((held, data))
        elif 0 < len(data) <= HELD_BYTES and not self._transport.is_closing():
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def flush(self) -> None:
        """Send what is held, if anything."""
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class BoundedHead(HttpToolsProtocol):
    """uvicorn's httptools protocol, reading at most :data:`MAX_HEAD_BYTES` of a head.

    A read that leaves a head incomplete counts whole, so the bound holds to
    within one read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport))

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
                b"content-length: "
                + str(len(_TOO_LARGE)).encode()
                + b"\r\n"
                + SECURITY_HEAD_LINES
                + b"connection: close\r\n\r\n"
                + _TOO_LARGE
            )
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A request the parser cannot read (a garbage request line, an unknown
        method): the JSON error and the security headers every answer carries,
        where uvicorn sends plain text."""
        body = json_encoder.encode(ErrorBody(status=400, detail=msg))
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        self.transport.write(
            b"".join(head)
            + b"content-type: application/json\r\n"
            + b"content-length: "
            + str(len(body)).encode()
            + b"\r\n"
            + SECURITY_HEAD_LINES
            + b"connection: close\r\n\r\n"
            + body
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
