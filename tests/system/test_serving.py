"""How responses leave the server: a response's head and body in one write, and
nothing held back from a response that has no body to follow."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, cast

import pytest
import uvicorn
import uvloop
from uvicorn.server import ServerState

from kenbun_analytics.web.serving import HELD_BYTES, CoalescedWrites, uvicorn_options
from support.world import World
from tests.conftest import LiveServer


class Recorded(asyncio.Transport):
    """A transport that records what reaches it, call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[bytes]]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", [bytes(data)]))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", [bytes(data) for data in list_of_data]))

    def close(self) -> None:
        self.calls.append(("close", []))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", []))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


Steps = Callable[[CoalescedWrites, Recorded], None]


def in_a_loop(steps: Steps) -> list[tuple[str, list[bytes]]]:
    """Run ``steps`` on an event loop, then one more turn of it; what reached the
    transport under the :class:`CoalescedWrites`."""
    recorded = Recorded()

    async def main() -> None:
        steps(CoalescedWrites(recorded), recorded)
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    uvloop.run(main())
    return recorded.calls


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n"


def test_a_head_and_the_body_after_it_leave_in_one_call() -> None:
    def steps(transport: CoalescedWrites, _: Recorded) -> None:
        transport.write(HEAD)
        transport.write(b"body")
        transport.write(HEAD)
        transport.write(b"x" * (10 * HELD_BYTES))

    assert in_a_loop(steps) == [
        ("writelines", [HEAD, b"body"]),
        ("writelines", [HEAD, b"x" * (10 * HELD_BYTES)]),
    ]


def test_a_lone_short_write_leaves_at_the_end_of_the_turn_and_a_long_one_at_once() -> None:
    seen: list[list[tuple[str, list[bytes]]]] = []

    def steps(transport: CoalescedWrites, recorded: Recorded) -> None:
        transport.write(b"x" * (HELD_BYTES + 1))
        seen.append(list(recorded.calls))
        transport.write(HEAD)
        seen.append(list(recorded.calls))
        assert transport.get_write_buffer_size() == len(HEAD)

    calls = in_a_loop(steps)
    assert seen == [[("write", [b"x" * (HELD_BYTES + 1)])]] * 2
    assert calls == [("write", [b"x" * (HELD_BYTES + 1)]), ("write", [HEAD])]


def test_closing_sends_what_is_held_first_and_aborting_drops_it() -> None:
    def closing(transport: CoalescedWrites, _: Recorded) -> None:
        transport.write(HEAD)
        transport.close()

    def aborting(transport: CoalescedWrites, _: Recorded) -> None:
        transport.write(HEAD)
        transport.abort()

    assert in_a_loop(closing) == [("write", [HEAD]), ("close", [])]
    assert in_a_loop(aborting) == [("abort", [])]


def test_the_server_protocol_writes_a_response_in_one_call() -> None:
    """uvicorn's own response cycle, through the protocol ``serve`` runs with."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]}
        )
        await send({"type": "http.response.body", "body": b"body"})

    recorded = Recorded()

    async def main() -> None:
        config = uvicorn.Config(app, **{**uvicorn_options(), "lifespan": "off"})
        config.load()
        # uvicorn types the class as a bare asyncio.Protocol; its HTTP protocols take these
        protocol_class = cast("Callable[..., asyncio.Protocol]", config.http_protocol_class)
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(recorded)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for _ in range(10):
            await asyncio.sleep(0)

    uvloop.run(main())
    [(call, (head, body))] = recorded.calls
    assert call == "writelines"
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\r\n\r\n")
    assert body == b"body"


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    world.event(unit, campaign="spring", lead=world.lead(unit, level="Hot"))
    return unit


def read_response(connection: socket.socket, *, body: bool) -> tuple[bytes, bytes]:
    """One response from a kept-alive connection: its head, and its body when it has one."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += received(connection, data)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    if body:
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
    while len(rest) < length:
        rest += received(connection, rest)
    assert len(rest) == length, (head, rest)
    return head, rest


def received(connection: socket.socket, so_far: bytes) -> bytes:
    """The next bytes of the connection; a timeout or a closed connection fails the test."""
    part = connection.recv(65536)
    assert part, so_far
    return part


def test_answers_without_a_body_reach_a_kept_alive_connection(
    world: World, unit: str, live: LiveServer
) -> None:
    """A HEAD answer and a 304 are a head alone: the head is not held waiting for a
    body, and the next answer on the same connection follows it."""
    auth = f"Authorization: {world.reader(unit)['Authorization']}\r\n".encode()
    request = b"GET /analytics/campaigns HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as connection:
        connection.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, _ = read_response(connection, body=False)
        assert head.startswith(b"HTTP/1.1 200 "), head

        connection.sendall(request + b"\r\n")
        head, body = read_response(connection, body=True)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b'"name":"spring"' in body
        etag = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"etag:")
        )

        connection.sendall(request + b"If-None-Match: " + etag + b"\r\n\r\n")
        head, _ = read_response(connection, body=False)
        assert head.startswith(b"HTTP/1.1 304 "), head


def header_lines(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The status line and the headers but those that differ between two answers."""
    status, *lines = head.split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in lines)
    return status, {
        name.lower(): value
        for name, value in fields.items()
        if name.lower() not in {b"date", b"x-request-id"}
    }


def test_a_head_sends_the_gets_head_and_not_one_byte_of_body(
    world: World, unit: str, live: LiveServer
) -> None:
    """Over a real socket, through uvicorn and httptools: a HEAD's answer is its GET's
    head, Content-Length (the GET body's) included, with no body bytes after it,
    which the next answer on the kept-alive connection would follow."""
    auth = f"Authorization: {world.reader(unit)['Authorization']}\r\n".encode()
    targets = [
        (b"/analytics/campaigns", auth),
        (b"/analytics/campaigns", auth + b"Accept-Encoding: gzip\r\n"),
        (b"/analytics/campaigns?start_date=&group_by=source", auth),
        (b"/analytics/campaigns/spring/leads", auth),
        (b"/analytics/campaigns", b""),
        (b"/", b""),
        (b"/static/app.js", b""),
        (b"/schema/openapi.json", b""),
        (b"/healthz", b""),
        (b"/nowhere", b""),
    ]
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as connection:
        for target, extra in targets:
            request = target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"
            connection.sendall(b"GET " + request)
            get_head, body = read_response(connection, body=True)
            connection.sendall(b"HEAD " + request)
            head, nothing = read_response(connection, body=False)  # fails on bytes after it
            assert header_lines(head) == header_lines(get_head), target
            assert int(header_lines(head)[1][b"content-length"]) == len(body) > 0, target
            assert nothing == b""
            etag = header_lines(get_head)[1].get(b"etag")
            if etag is not None and target.startswith(b"/analytics"):
                connection.sendall(
                    b"HEAD " + request[:-2] + b"If-None-Match: " + etag + b"\r\n\r\n"
                )
                head, _ = read_response(connection, body=False)
                assert head.startswith(b"HTTP/1.1 304 "), head
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, body = read_response(connection, body=True)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert body == b'{"status":"ok"}'
