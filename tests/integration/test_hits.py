"""Repeated aggregates answered from the cache before routing (``hits.py``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.web import hits
from kenbun_analytics.web.auth import ACTIVE_OU_COOKIE
from kenbun_analytics.web.cache import ResultCache
from support.world import World
from tests.conftest import make_app, refresh

Client = TestClient[Litestar]
PATHS = (
    "/analytics/campaigns",
    "/analytics/campaigns?group_by=source",
    "/analytics/campaigns?group_by=medium&start_date=2026-01-01&end_date=2026-12-31",
    "/analytics/campaigns?start_date=2026-03-01T00%3A00%3A00Z",
    "/analytics/campaigns?start_date=&end_date=&group_by=",
    "/analytics/campaigns?group_by=source&start_date=&start_date=2026-01-01",
)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each request reaching the layer was answered by it."""
    answers: list[bool] = []
    original = hits._answer

    def spy(scope: dict[str, Any], services: Any) -> Any:
        answer = original(scope, services)
        answers.append(answer is not None)
        return answer

    monkeypatch.setattr(hits, "_answer", spy)
    return answers


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    for n in range(40):  # a body large enough to be gzipped
        world.event(unit, campaign=f"campaign {n}", source="news", lead=world.lead(unit))
    return unit


@pytest.fixture
def client(database_url: str, unit: str) -> Iterator[Client]:
    with TestClient(make_app(database_url)) as client:
        refresh(client)
        yield client


def comparable(response: Any) -> tuple[int, dict[str, str], bytes]:
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in {"date", "x-request-id"}
    }
    return response.status_code, headers, response.content


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_cached_answer_is_the_apps_answer_byte_for_byte(
    client: Client, world: World, unit: str, served: list[bool], path: str, encoding: str
) -> None:
    """Status, headers and body equal what the app gives for the same cached answer
    (an unknown parameter sends the request through the app); 304s too."""
    headers = {**world.reader(unit), "Accept-Encoding": encoding}
    separator = "&" if "?" in path else "?"
    first = client.get(path, headers=headers)
    assert first.status_code == 200
    fast = client.get(path, headers=headers)
    routed = client.get(f"{path}{separator}unused=1", headers=headers)
    assert served == [False, True, False]
    assert comparable(fast) == comparable(routed) == comparable(first)
    assert fast.headers["x-request-id"]
    not_modified = {**headers, "If-None-Match": fast.headers["etag"]}
    assert comparable(client.get(path, headers=not_modified)) == comparable(
        client.get(f"{path}{separator}unused=1", headers=not_modified)
    )
    assert served[-2:] == [True, False]


@pytest.mark.parametrize(
    ("path", "same_as"),
    [
        ("/analytics/campaigns?start_date=&end_date=&group_by=", "/analytics/campaigns"),
        ("/analytics/campaigns?group_by=&group_by=source", "/analytics/campaigns?group_by=source"),
        (
            "/analytics/campaigns?start_date=&start_date=2026-01-01&end_date=",
            "/analytics/campaigns?start_date=2026-01-01",
        ),
    ],
)
def test_empty_parameters_are_answered_from_the_entry_without_them(
    client: Client, world: World, unit: str, served: list[bool], path: str, same_as: str
) -> None:
    """An empty value is no value here too: the layer answers from the cache entry
    of the request without it, with its bytes and ETag."""
    headers = world.reader(unit)
    first = client.get(same_as, headers=headers)
    assert first.status_code == 200
    empty = client.get(path, headers=headers)
    assert served == [False, True]
    assert comparable(empty) == comparable(first)


def test_a_head_is_answered_by_the_layer_as_its_get_without_the_body(
    client: Client, world: World, unit: str, served: list[bool]
) -> None:
    """A HEAD reaches the layer as its GET: a cached answer's status and headers,
    no body; a 304 with the current ETag."""
    for encoding in ("identity", "gzip"):
        headers = {**world.reader(unit), "Accept-Encoding": encoding}
        get = client.get(PATHS[1], headers=headers)
        head = client.head(PATHS[1], headers=headers)
        assert head.content == b""
        assert comparable(head)[:2] == comparable(get)[:2]
        current = {**headers, "If-None-Match": get.headers["etag"]}
        not_modified = client.head(PATHS[1], headers=current)
        assert comparable(not_modified) == comparable(client.get(PATHS[1], headers=current))
        assert not_modified.status_code == 304
    assert served == [False, True, True, True, False, True, True, True]


def test_what_the_layer_leaves_to_the_app(
    client: Client, world: World, unit: str, served: list[bool]
) -> None:
    """Cookies, repeated or unusual parameters, bad dates and bad credentials go on to
    the app, which answers them as always."""
    headers = world.reader(unit)
    assert client.get("/analytics/campaigns", headers=headers).status_code == 200
    served.clear()
    client.cookies.set(ACTIVE_OU_COOKIE, unit)
    assert client.get("/analytics/campaigns", headers=headers).status_code == 200
    client.cookies.clear()
    assert (
        client.get("/analytics/campaigns?group_by=a&group_by=b", headers=headers).status_code == 400
    )
    assert (
        client.get("/analytics/campaigns?start_date=2026-13-01", headers=headers).status_code == 400
    )
    wrong = {"Authorization": "Bearer kbn_pat_not-a-real-token"}
    assert client.get("/analytics/campaigns", headers=wrong).status_code == 401
    assert served == [False, False, False, False]


def test_the_rate_limit_counts_cached_answers(
    database_url: str, world: World, unit: str, served: list[bool]
) -> None:
    """Answers from the layer spend the credential's budget; the app says 429 after."""
    with TestClient(
        make_app(database_url, rate_limit_per_second=0.01, rate_limit_burst=3)
    ) as client:
        refresh(client)
        headers = world.reader(unit)
        statuses = [
            client.get("/analytics/campaigns", headers=headers).status_code for _ in range(4)
        ]
    assert statuses == [200, 200, 200, 429]
    assert served == [False, True, True, False]


def test_an_answer_is_compressed_by_the_app_off_the_event_loop(
    client: Client, world: World, unit: str, served: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer cached without its gzip form is left to the app when gzip is
    asked for; the app compresses it in a worker thread, and the layer answers
    the gzip requests after it."""
    threads: dict[str, set[int]] = {"loop": set(), "gzip": set()}
    answer, gzipped = hits._answer, ResultCache.gzipped

    def on_loop(scope: dict[str, Any], services: Any) -> Any:
        threads["loop"].add(threading.get_ident())
        return answer(scope, services)

    def compressing(cache: ResultCache, key: Any, entry: Any) -> Any:
        if entry.gzipped is None:
            threads["gzip"].add(threading.get_ident())
        return gzipped(cache, key, entry)

    monkeypatch.setattr(hits, "_answer", on_loop)
    monkeypatch.setattr(ResultCache, "gzipped", compressing)
    headers = {**world.reader(unit), "Accept-Encoding": "identity"}
    plain = client.get("/analytics/campaigns", headers=headers)
    assert client.get("/analytics/campaigns", headers=headers).content == plain.content
    packed = {**headers, "Accept-Encoding": "gzip"}
    first = client.get("/analytics/campaigns", headers=packed)
    second = client.get("/analytics/campaigns", headers=packed)
    assert served == [False, True, False, True]
    assert first.headers["content-encoding"] == "gzip"
    assert comparable(first) == comparable(second)
    assert len(threads["gzip"]) == 1
    assert threads["loop"]
    assert not threads["gzip"] & threads["loop"]
