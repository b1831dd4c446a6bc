"""Faults: PostgreSQL stopped, backends terminated, refreshes hung, a service started
against a database that is not there yet.

These tests run their own embedded PostgreSQL, because they stop and start it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.local.embedded import EmbeddedPostgres
from kenbun_analytics.refresh.refresher import Refresher
from kenbun_analytics.refresh.schedule import start_scheduler
from kenbun_analytics.settings import Settings
from kenbun_analytics.source.postgres import Source
from kenbun_analytics.store import SnapshotStore
from kenbun_analytics.web.app import create_app
from kenbun_analytics.web.observability import JsonFormatter
from support.world import World, backend_waiting_on_lock, until
from tests.conftest import admin

Client = TestClient[Litestar]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    embedded = EmbeddedPostgres(Path(tmp_path_factory.mktemp("faults")) / "data", fast=True)
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def database(server: EmbeddedPostgres) -> Iterator[str]:
    """A migrated database on the private server, which is running at the start of each test."""
    if server.pid is None:
        server.start()
    name = "faults_" + uuid.uuid4().hex[:10]
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = server.url.rsplit("/", 1)[0] + "/" + name
    source = Source(url)
    source.migrate()
    source.close()
    yield url
    if server.pid is None:
        server.start()
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def world(database: str) -> Iterator[World]:
    with World.connect(database) as built:
        yield built


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    lead = world.lead(unit, level="Hot")
    for campaign in ("spring", "spring", "autumn"):
        world.event(unit, lead=lead, campaign=campaign)
    return unit


def serving_app(url: str, **overrides: Any) -> Litestar:
    settings = Settings(
        database_url=url,
        refresh_seconds=overrides.pop("refresh_seconds", 0.5),
        full_refresh_seconds=3600,
        **overrides,
    )
    return create_app(settings, run_scheduler=True)


def campaigns(client: Client, headers: dict[str, str], start: str | None = None) -> Any:
    params = {"start_date": start} if start else {}
    response = client.get("/analytics/campaigns", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["campaigns"]


def ready(client: Client) -> bool:
    return client.get("/readyz").status_code == 200


def refresh_waiting_on_a_lock(
    refresher: Refresher, database: str
) -> tuple[psycopg.Connection[Any], threading.Thread, list[bool]]:
    """A refresh running in a thread, stalled on a lock held by the returned connection."""
    results: list[bool] = []
    holder = psycopg.connect(database)
    holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    thread = threading.Thread(target=lambda: results.append(refresher.refresh(wait=True)))
    thread.start()
    try:
        # A full refresh starts its loading child first: on a busy machine, seconds.
        until(lambda: backend_waiting_on_lock(database), 30, "the refresh waiting on the lock")
    except BaseException:
        holder.close()  # the refresh finishes, and no open connection outlives the test
        thread.join(30)
        raise
    return holder, thread, results


def test_outage_keeps_serving_and_the_first_refresh_after_it_succeeds(
    server: EmbeddedPostgres, world: World, unit: str, database: str
) -> None:
    """With PostgreSQL stopped, every request gets 200 from the last snapshot (cached or
    not, credentials included); the admin /healthz shows the error and a growing age;
    once the server is back, the next refresh succeeds without a restart."""
    headers = world.reader(unit)
    with TestClient(serving_app(database)) as client:
        until(lambda: ready(client), 20, "ready")
        before = campaigns(client, headers)
        assert {row["name"] for row in before} == {"spring", "autumn"}
        server.stop()
        until(lambda: admin(client).get("/healthz").json()["last_refresh_error"], 10, "the error")
        ages = []
        for day in range(1, 29):  # uncached windows: computed from the last snapshot
            assert campaigns(client, headers) == before
            assert campaigns(client, headers, f"2020-02-{day:02d}") == before
            health = admin(client).get("/healthz").json()
            assert "failed" in health["last_refresh_error"]
            ages.append(health["org_units"][0]["snapshot_age_seconds"])
            time.sleep(0.05)
        assert ages == sorted(ages)
        assert ages[-1] > ages[0]
        assert client.get("/readyz").status_code == 200  # it has a snapshot to serve

        server.start()
        world.reconnect()
        world.event(unit, campaign="winter")
        until(
            lambda: (
                {row["name"] for row in campaigns(client, headers)}
                == {"spring", "autumn", "winter"}
            ),
            15,
            "the first refresh after the outage",
        )
        assert admin(client).get("/healthz").json()["last_refresh_error"] is None


def test_answers_on_a_stale_credential_are_logged_and_counted(
    server: EmbeddedPostgres,
    world: World,
    unit: str,
    database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With PostgreSQL stopped, a credential looked up before keeps reading for
    KENBUN_AUTH_STALE_SECONDS, though it may have been revoked meanwhile: each such
    answer is one JSON warning line naming the credential's id (never its secret) and
    one count of kenbun_auth_stale_answers_total. A credential never seen gets a 503."""
    headers = world.reader(unit)
    token = headers["Authorization"].split()[1]
    [token_id] = [key for key, value in world.tokens.items() if value == token]
    app = serving_app(database, refresh_seconds=3600, auth_cache_seconds=0)
    with TestClient(app) as client:
        until(lambda: ready(client), 20, "ready")
        before = campaigns(client, headers)
        server.stop()
        with caplog.at_level(logging.INFO, logger="kenbun_analytics.web.auth"):
            for _ in range(3):
                assert campaigns(client, headers) == before
        never_seen = {"Authorization": "Bearer never-seen-token"}
        assert client.get("/analytics/campaigns", headers=never_seen).status_code == 503
        metrics = admin(client).get("/metrics").text
    assert "\nkenbun_auth_stale_answers_total 3.0\n" in metrics
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "kenbun_analytics.web.auth"]
    assert len(lines) == 3
    for line in lines:
        entry = json.loads(line)
        assert entry["level"] == "warning"
        assert entry["credential_id"] == token_id
        assert entry["credential_kind"] == "user"
        assert entry["lookup_age_seconds"] >= 0
        assert token not in line


def test_a_backend_terminated_mid_refresh(world: World, unit: str, database: str) -> None:
    """pg_terminate_backend during a refresh fails that refresh only; the next one
    reconnects and succeeds, and answers never stop."""
    headers = world.reader(unit)
    with TestClient(serving_app(database, refresh_seconds=3600)) as client:
        until(lambda: ready(client), 20, "ready")
        before = campaigns(client, headers)
        refresher: Refresher = client.app.state.refresher
        refresher.request_full()
        holder, thread, results = refresh_waiting_on_a_lock(refresher, database)
        with holder:
            assert campaigns(client, headers) == before
            with psycopg.connect(database, autocommit=True) as killer:
                killer.execute(
                    "SELECT pg_terminate_backend(%s)", (backend_waiting_on_lock(database),)
                )
        # The other part of the events, read on another connection, finishes once
        # the lock is gone; the refresh as a whole fails.
        thread.join(10)
        assert results == [False]
        assert (
            "terminating connection"
            in admin(client).get("/healthz").json()["org_units"][0]["last_error"]
        )
        assert campaigns(client, headers) == before
        world.event(unit, campaign="winter")
        assert refresher.refresh(wait=True)
        assert {row["name"] for row in campaigns(client, headers)} == {"spring", "autumn", "winter"}


def test_the_server_stopped_mid_refresh(
    server: EmbeddedPostgres, world: World, unit: str, database: str
) -> None:
    """Stopping PostgreSQL while a refresh reads fails that refresh; after a start, the
    next refresh succeeds on a new connection."""
    headers = world.reader(unit)
    with TestClient(serving_app(database, refresh_seconds=3600)) as client:
        until(lambda: ready(client), 20, "ready")
        before = campaigns(client, headers)
        refresher: Refresher = client.app.state.refresher
        refresher.request_full()
        holder, thread, results = refresh_waiting_on_a_lock(refresher, database)
        server.stop()
        thread.join(10)
        holder.close()
        assert results == [False]
        assert campaigns(client, headers) == before
        server.start()
        world.reconnect()
        assert refresher.refresh(wait=True)
        assert campaigns(client, headers) == before


def test_a_service_started_while_the_database_is_down(
    server: EmbeddedPostgres, world: World, unit: str, database: str
) -> None:
    """It stays up, /readyz is 503 with the reason, retries back off, and it becomes
    ready once PostgreSQL appears; answers then match the data."""
    headers = world.reader(unit)
    server.stop()
    with TestClient(serving_app(database, refresh_seconds=4)) as client:
        status = client.app.state.refresher.status
        until(lambda: status.failures.get("*", 0) >= 3, 10, "three attempts")
        response = client.get("/readyz")
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert detail == (  # the reason, without the database's address or error text
            "not ready: the snapshot refresh failed and is retried "
            "(PostgreSQL unreachable or failing)"
        )
        error = admin(client).get("/healthz").json()["last_refresh_error"]
        assert error.startswith("migrate failed: ")  # the operator's listener says which
        assert "SELECT" not in error
        # Backoff: 0.5 s, 1 s, 2 s, ... so the attempts slow down instead of hammering.
        attempts_at_3 = status.failures["*"]
        time.sleep(2.0)
        assert status.failures["*"] - attempts_at_3 <= 2
        assert client.get("/healthz").status_code == 200
        server.start()
        took = until(lambda: ready(client), 15, "ready after PostgreSQL started")
        assert took <= 15
        world.reconnect()
        assert {row["name"] for row in campaigns(client, headers)} == {"spring", "autumn"}


def test_a_hung_refresh_is_abandoned_after_the_timeout(
    world: World, unit: str, database: str
) -> None:
    """A lock held on a source table stalls the refresh's read; after the refresh timeout
    PostgreSQL cancels it, the refresh fails cleanly and the next one succeeds."""
    headers = world.reader(unit)
    with TestClient(
        serving_app(database, refresh_seconds=3600, refresh_timeout_seconds=1)
    ) as client:
        until(lambda: ready(client), 20, "ready")
        before = campaigns(client, headers)
        refresher: Refresher = client.app.state.refresher
        refresher.request_full()
        with psycopg.connect(database) as holder:
            holder.execute("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            assert refresher.refresh(wait=True) is False
            took = time.monotonic() - started
        assert 0.9 <= took < 5
        health = admin(client).get("/healthz").json()
        assert "statement timeout" in health["org_units"][0]["last_error"]
        assert campaigns(client, headers) == before
        assert refresher.refresh(wait=True)
        assert admin(client).get("/healthz").json()["org_units"][0]["last_error"] is None


def test_the_scheduler_keeps_firing_after_failures(database: str) -> None:
    """Refreshes that raise, fail or hit a dead server never stop later ticks."""

    class Broken(Source):
        def org_unit_ids(self) -> list[str]:
            raise ZeroDivisionError("a bug")

    for source in (Broken(database), Source("postgresql://127.0.0.1:9/nothing")):
        refresher = Refresher(
            source, SnapshotStore(), full_refresh_seconds=3600, refresh_seconds=0.1
        )
        scheduler = start_scheduler(refresher, tick_seconds=0.05)
        try:

            def failed_eight(r: Refresher = refresher) -> bool:
                return r.status.failures.get("*", 0) >= 8

            until(failed_eight, 10, "eight failed ticks")
        finally:
            scheduler.shutdown(wait=True)
            source.close()
        assert refresher.status.consecutive_failures >= 8


def test_retry_delays_double_up_to_the_interval(database: str) -> None:
    refresher = Refresher(
        Source(database), SnapshotStore(), full_refresh_seconds=1, refresh_seconds=5
    )
    assert [refresher.retry_delay(n) for n in range(6)] == [5, 0.5, 1, 2, 4, 5]
