"""What the public address tells nobody, what the admin listener tells the
operator, and the security headers on every answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import uvicorn
import uvloop
from litestar import Litestar
from litestar.testing import TestClient
from uvicorn.server import ServerState

from kenbun_analytics.store import RefreshStatus, SnapshotStore
from kenbun_analytics.web import hits
from kenbun_analytics.web.cache import ResultCache
from kenbun_analytics.web.guard import MAX_HEAD_BYTES, MAX_QUERY_BYTES
from kenbun_analytics.web.observability import Metrics, observe
from kenbun_analytics.web.serving import uvicorn_options
from support.hostile_corpus import exchange
from support.world import World
from tests.conftest import LiveServer, admin, make_app, refresh
from tests.system.test_serving import Recorded

Client = TestClient[Litestar]

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def assert_secured(response: Any) -> None:
    """Each security header exactly once, with exactly its value."""
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.status_code)


def assert_secured_raw(response: bytes) -> None:
    head = response.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")[1:]
    for name, value in SECURITY_HEADERS.items():
        lines = [line for line in head if line.startswith(name.encode() + b":")]
        assert lines == [f"{name}: {value}".lower().encode()], (name, response[:300])


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    world.event(unit, campaign="spring", lead=world.lead(unit, level="Hot"))
    return unit


@pytest.fixture
def client(database_url: str, unit: str) -> Iterator[Client]:
    with TestClient(make_app(database_url)) as client:
        yield client


# ------------------------------------------------ public and admin answers --


def test_the_public_address_tells_only_the_status(world: World, unit: str, client: Client) -> None:
    """/healthz and /readyz say no org unit id, count, size, error or address; /metrics
    is not there; the admin listener has all of it."""
    public = [client.get("/readyz"), client.get("/healthz")]
    assert public[0].json() == {
        "ready": False,
        "detail": "not ready: the first snapshot refresh has not finished",
    }
    refresh(client)
    public += [client.get("/readyz"), client.get("/healthz")]
    assert public[2].json() == {"ready": True, "detail": "ready"}
    assert public[3].json() == {"status": "ok"}
    missing = client.get("/metrics")
    assert missing.status_code == 404
    assert missing.json() == {"status": 404, "detail": "Not Found"}
    for response in public:
        assert unit not in response.text
    assert "/healthz" in client.get("/schema/openapi.json").json()["paths"]
    assert "/metrics" not in client.get("/schema/openapi.json").json()["paths"]

    details = admin(client).get("/healthz").json()
    assert [u["org_unit_id"] for u in details["org_units"]] == [unit]
    assert details["org_units"][0]["events"] == 1
    metrics = admin(client).get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert f'kenbun_snapshot_rows{{org_unit="{unit}"}} 1.0' in metrics.text
    assert admin(client).get("/readyz").json() == {"ready": True, "detail": "ready"}
    assert admin(client).get("/schema/openapi.json").status_code == 404


def test_a_failing_database_is_named_on_the_admin_listener_only(
    world: World, unit: str, database_url: str
) -> None:
    """A refresh failing against an unreachable PostgreSQL: the public /readyz says so
    without its host and port, which the admin /healthz gives."""
    unreachable = "postgresql://kenbun@127.0.0.1:9/nowhere"
    with TestClient(make_app(unreachable, migrate=False)) as client:
        assert client.app.state.refresher.refresh(wait=True) is False
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "ready": False,
            "detail": "not ready: the snapshot refresh failed and is retried "
            "(PostgreSQL unreachable or failing)",
        }
        assert client.get("/healthz").json() == {"status": "ok"}
        for response in (ready, client.get("/healthz")):
            assert "127.0.0.1" not in response.text
            assert ":9" not in response.text
        error = admin(client).get("/healthz").json()["last_refresh_error"]
        assert "127.0.0.1" in error
        assert "failed" in error
        assert "127.0.0.1" not in admin(client).get("/readyz").text


# ------------------------------------------------------ security headers --


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each request reaching hits.py was answered there, before routing."""
    answers: list[bool] = []
    original = hits._answer

    def spy(scope: dict[str, Any], services: Any) -> Any:
        answer = original(scope, services)
        answers.append(answer is not None)
        return answer

    monkeypatch.setattr(hits, "_answer", spy)
    return answers


def test_every_kind_of_answer_carries_the_security_headers(
    world: World, unit: str, client: Client, served: list[bool]
) -> None:
    """Page, assets, schema, API answers, 304s, every error, the guard's rejections,
    the cached answers sent before routing, and the admin listener's answers."""
    reader = world.reader(unit)
    responses = {
        "503 not ready": client.get("/analytics/campaigns", headers=reader),
        "readyz 503": client.get("/readyz"),
    }
    refresh(client)
    first = client.get("/analytics/campaigns", headers=reader)
    cached = client.get("/analytics/campaigns", headers=reader)
    assert served[-2:] == [False, True]
    not_modified = {**reader, "If-None-Match": cached.headers["etag"]}
    cached_304 = client.get("/analytics/campaigns", headers=not_modified)
    assert served[-3:] == [False, True, True]
    responses |= {
        "page": client.get("/"),
        "page /campaigns": client.get("/campaigns"),
        "script": client.get("/static/app.js"),
        "stylesheet": client.get("/static/app.css"),
        "missing asset": client.get("/static/nothing.js"),
        "schema": client.get("/schema/openapi.json"),
        "aggregate": first,
        "aggregate before routing": cached,
        "304 before routing": cached_304,
        "304 routed": client.get("/analytics/campaigns?group_by=campaign", headers=not_modified),
        "drilldown": client.get("/analytics/campaigns/spring/leads", headers=reader),
        "org units": client.get("/org-units", headers=reader),
        "choose org unit": client.post(
            "/org-units/active", json={"org_unit_id": unit}, headers=reader
        ),
        "healthz": client.get("/healthz"),
        "readyz": client.get("/readyz"),
        "401": client.get("/analytics/campaigns"),
        "401 junk credential": client.get(
            "/analytics/campaigns", headers={"Authorization": "Bearer a\x00b"}
        ),
        "403": client.get(
            "/analytics/campaigns", headers={**reader, "X-Org-Unit-Id": "not-a-uuid"}
        ),
        "400": client.get("/analytics/campaigns?start_date=x", headers=reader),
        "404": client.get("/nowhere"),
        "405": client.delete("/org-units"),
        "415": client.post("/org-units/active", content=b"{}", headers=reader),
        "guard 414": client.get("/analytics/campaigns?x=" + "a" * MAX_QUERY_BYTES, headers=reader),
        "guard 431": client.get("/analytics/campaigns", headers={"X-Pad": "a" * 17_000}),
        "guard 413": client.post("/org-units/active", content=b"x" * 20_000, headers=reader),
        "admin healthz": admin(client).get("/healthz"),
        "admin metrics": admin(client).get("/metrics"),
        "admin readyz": admin(client).get("/readyz"),
        "admin 404": admin(client).get("/nowhere"),
    }
    statuses = {label: response.status_code for label, response in responses.items()}
    assert statuses == {
        "503 not ready": 503,
        "readyz 503": 503,
        "page": 200,
        "page /campaigns": 200,
        "script": 200,
        "stylesheet": 200,
        "missing asset": 404,
        "schema": 200,
        "aggregate": 200,
        "aggregate before routing": 200,
        "304 before routing": 304,
        "304 routed": 304,
        "drilldown": 200,
        "org units": 200,
        "choose org unit": 204,
        "healthz": 200,
        "readyz": 200,
        "401": 401,
        "401 junk credential": 401,
        "403": 403,
        "400": 400,
        "404": 404,
        "405": 405,
        "415": 415,
        "guard 414": 414,
        "guard 431": 431,
        "guard 413": 413,
        "admin healthz": 200,
        "admin metrics": 200,
        "admin readyz": 200,
        "admin 404": 404,
    }
    for response in responses.values():
        assert_secured(response)


def test_a_fault_before_the_answer_is_a_json_500_with_the_headers() -> None:
    """A layer outside Litestar's exception handling that raises gets the usual JSON
    error from observe, not the server's plain text."""

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("/home/secret/path.py: SELECT 1")

    metrics = Metrics(SnapshotStore(), ResultCache(0), RefreshStatus())
    app = observe(broken, metrics, access_log=False)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    asyncio.run(app({"type": "http", "method": "GET", "headers": []}, receive, send))
    start, body = sent
    assert start["status"] == 500
    headers = dict(start["headers"])
    for name, value in SECURITY_HEADERS.items():
        assert headers[name.encode()] == value.encode()
    assert json.loads(body["body"]) == {
        "status": 500,
        "detail": "internal error; retry later or contact support",
    }


def _protocol_writes(data: bytes) -> bytes:
    """What the HTTP protocol ``serve`` runs with writes for ``data`` on its own."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app is not called")

    recorded = Recorded()

    async def main() -> None:
        config = uvicorn.Config(app, **{**uvicorn_options(), "lifespan": "off"})
        config.load()
        # uvicorn types the class as a bare asyncio.Protocol; its HTTP protocols take these
        protocol_class = cast("Callable[..., asyncio.Protocol]", config.http_protocol_class)
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(recorded)
        protocol.data_received(data)
        for _ in range(10):
            await asyncio.sleep(0)

    uvloop.run(main())
    return b"".join(b"".join(chunks) for _, chunks in recorded.calls)


def test_the_servers_own_answers_carry_the_headers_too() -> None:
    """The answers the HTTP protocol writes without the app: a request it cannot
    parse (a JSON 400 where uvicorn sends text) and a head past its bound (431)."""
    garbage = _protocol_writes(b"\x00\x01\x02 / HTTP/1.1\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    assert_secured_raw(garbage)
    body = garbage.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body) == {"status": 400, "detail": "Invalid HTTP request received."}
    assert b"content-type: application/json\r\n" in garbage

    endless = _protocol_writes(b"GET / HTTP/1.1\r\nX-Padding: " + b"a" * (MAX_HEAD_BYTES + 1))
    assert endless.startswith(b"HTTP/1.1 431 ")
    assert_secured_raw(endless)


def test_the_headers_reach_the_wire_once(unit: str, live: LiveServer) -> None:
    """Over a real socket: a page, an error, a guard's rejection (a repeated header,
    which the test client would merge) and an unparseable request."""
    twice = b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n"
    for request, status in (
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + twice + b"Connection: close\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200),
        (b"GET /analytics/campaigns HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 401),
        (b"BREW / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    ):
        code, response = exchange(live.port, request)
        assert code == status
        assert_secured_raw(response)
