"""HEAD on every GET route: the GET's status and headers, without the body (RFC 9110)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.web.guard import MAX_QUERY_BYTES
from support.world import World
from tests.conftest import admin, refresh

Client = TestClient[Litestar]

GET_ROUTES = (
    "/analytics/campaigns",
    "/analytics/campaigns?group_by=source&start_date=2026-01-01&end_date=",
    "/analytics/campaigns/spring/leads",
    "/analytics/campaigns/a%2Fb/leads?group_by=medium",
    "/org-units",
    "/healthz",
    "/readyz",
    "/",
    "/campaigns",
    "/static/app.js",
    "/static/app.css",
    "/static/index.html",
    "/schema",
    "/schema/openapi.json",
)
ERRORS = (
    "/nowhere",
    "/static/missing.js",
    "/analytics/campaigns?start_date=yesterday",
    "/analytics/campaigns?group_by=a&group_by=b",
    "/analytics/campaigns/50%/leads",
    "/healthz?q=" + "x" * MAX_QUERY_BYTES,  # the guard's 414, before routing
)


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    for n in range(40):  # an answer large enough to be gzipped
        world.event(unit, campaign=f"campaign {n}", source="news", lead=world.lead(unit))
    world.event(unit, campaign="spring", medium="a/b", lead=world.lead(unit))
    return unit


@pytest.fixture
def headers(world: World, unit: str, client: Client) -> dict[str, str]:
    refresh(client)
    return world.reader(unit)


def comparable(response: Any) -> tuple[int, dict[str, str]]:
    """Status and headers but those that differ from one answer to the next."""
    varying = {"date", "x-request-id"}
    return response.status_code, {
        name: value for name, value in response.headers.items() if name not in varying
    }


@pytest.mark.parametrize("head_first", [False, True], ids=["after-get", "before-get"])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_head_is_its_get_without_the_body(
    client: Client, headers: dict[str, str], encoding: str, head_first: bool
) -> None:
    """Same status and headers (Content-Length of the GET's body, ETag, Content-Type,
    X-Snapshot-At...), no body, on every GET route and for errors; whether the GET's
    answer is cached yet or not."""
    sent = {**headers, "Accept-Encoding": encoding}
    statuses, encodings = set(), set()
    for path in GET_ROUTES + ERRORS:
        if head_first:
            head = client.head(path, headers=sent)
            get = client.get(path, headers=sent)
        else:
            get = client.get(path, headers=sent)
            head = client.head(path, headers=sent)
        assert head.content == b"", path
        assert comparable(head) == comparable(get), path
        assert "content-length" in head.headers, path
        if "content-encoding" not in get.headers:
            assert int(head.headers["content-length"]) == len(get.content) > 0, path
        statuses.add(get.status_code)
        encodings.add(get.headers.get("content-encoding"))
    assert statuses == {200, 400, 404, 414}
    assert encodings == ({None, "gzip"} if encoding == "gzip" else {None})


def test_a_head_without_credentials_is_the_gets_401(
    client: Client, headers: dict[str, str]
) -> None:
    del headers
    for path in ("/analytics/campaigns", "/analytics/campaigns/spring/leads", "/org-units"):
        head = client.head(path)
        assert head.status_code == 401
        assert head.headers["www-authenticate"]
        assert head.content == b""
        assert comparable(head) == comparable(client.get(path))


def test_a_head_with_the_current_etag_is_a_304(client: Client, headers: dict[str, str]) -> None:
    for path in ("/analytics/campaigns", "/analytics/campaigns/spring/leads"):
        etag = client.head(path, headers=headers).headers["etag"]
        current = {**headers, "If-None-Match": etag}
        head = client.head(path, headers=current)
        assert head.status_code == 304
        assert head.headers["etag"] == etag
        assert comparable(head) == comparable(client.get(path, headers=current))
        stale = client.head(path, headers={**headers, "If-None-Match": '"stale"'})
        assert (stale.status_code, stale.content) == (200, b"")


def test_the_admin_listener_answers_head(client: Client, headers: dict[str, str]) -> None:
    """/healthz, /readyz and /metrics there too (the details and the metrics change
    between two answers, so their lengths may)."""
    del headers
    listener = admin(client)
    for path in ("/healthz", "/readyz", "/metrics"):
        get = listener.get(path)
        head = listener.head(path)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-type"] == get.headers["content-type"]
        assert int(head.headers["content-length"]) > 0
    assert comparable(listener.head("/readyz")) == comparable(listener.get("/readyz"))


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/analytics/campaigns", "GET, HEAD, OPTIONS"),
        ("POST", "/analytics/campaigns/spring/leads", "GET, HEAD, OPTIONS"),
        ("PUT", "/healthz", "GET, HEAD, OPTIONS"),
        ("PATCH", "/", "GET, HEAD, OPTIONS"),
        ("DELETE", "/static/app.js", "GET, HEAD, OPTIONS"),
        ("DELETE", "/org-units/active", "OPTIONS, POST"),
        ("HEAD", "/org-units/active", "OPTIONS, POST"),
    ],
)
def test_a_405_allows_head_wherever_it_allows_get(
    client: Client, headers: dict[str, str], method: str, path: str, allow: str
) -> None:
    """The Allow header names HEAD beside GET; a route without GET allows no HEAD."""
    response = client.request(method, path, headers=headers)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method == "HEAD":
        assert response.content == b""
    else:
        assert response.json()["status"] == 405
    options = client.options(path, headers=headers)
    assert (options.status_code, options.headers["allow"]) == (204, allow)


def test_head_requests_are_logged_and_counted_as_head(
    client: Client, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kenbun_analytics.access"):
        for _ in range(2):  # the second is answered by the cached-hits layer
            assert client.head("/analytics/campaigns", headers=headers).status_code == 200
        assert client.head("/static/app.css").status_code == 200
    logged = [
        (record.fields["method"], record.fields["route"], record.fields["status"])  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == "kenbun_analytics.access"
    ]
    assert logged == [
        ("HEAD", "/analytics/campaigns", 200),
        ("HEAD", "/analytics/campaigns", 200),
        ("HEAD", "/static/{file_path}", 200),
    ]
    metrics = admin(client).get("/metrics").text
    assert (
        'kenbun_http_requests_total{method="HEAD",route="/analytics/campaigns",status="200"} 2.0'
        in metrics
    )
