"""Snapshot refresh: changes arrive incrementally, failures keep the last good snapshot."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.api import campaigns_body
from kenbun_analytics.scheduler import READER_NICENESS, Refresher
from kenbun_analytics.source import Source
from kenbun_analytics.store import SnapshotStore
from tests.conftest import refresh
from tests.world import World

Client = TestClient[Litestar]


@pytest.fixture
def unit(world: World) -> str:
    return world.org_unit("Acme")


@pytest.fixture
def headers(world: World, unit: str) -> dict[str, str]:
    return world.reader(unit)


def totals(
    client: Client, headers: dict[str, str], group_by: str = "campaign"
) -> dict[str, tuple[int, int]]:
    response = client.get("/analytics/campaigns", headers=headers, params={"group_by": group_by})
    assert response.status_code == 200, response.text
    return {r["name"]: (r["total_events"], r["mql_count"]) for r in response.json()["campaigns"]}


def incremental(client: Client) -> None:
    refresh(client)
    assert client.app.state.refresher.status.last_kind == "incremental"


def test_inserts_updates_and_deletes_arrive_incrementally(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """Each kind of write to events shows after one incremental refresh."""
    lead = world.lead(unit, level="Cold")
    first = world.event(unit, lead=lead, campaign="a")
    refresh(client)
    assert client.app.state.refresher.status.last_kind == "full"
    assert totals(client, headers) == {"a": (1, 0)}

    world.event(unit, lead=lead, campaign="a")
    world.event(unit, campaign="b")
    incremental(client)
    assert totals(client, headers) == {"a": (2, 0), "b": (1, 0)}

    world.sql('UPDATE events SET metadata = \'{"utm_campaign": "c"}\' WHERE id = %s', (first,))
    incremental(client)
    assert totals(client, headers) == {"a": (1, 0), "b": (1, 0), "c": (1, 0)}

    world.sql(
        "UPDATE events SET normalized = true, normalized_parent = false WHERE id = %s", (first,)
    )
    incremental(client)
    assert totals(client, headers) == {"a": (1, 0), "b": (1, 0)}

    world.sql("DELETE FROM events WHERE metadata ->> 'utm_campaign' = 'b'")
    incremental(client)
    assert totals(client, headers) == {"a": (1, 0)}


def test_lead_and_deal_changes_arrive_incrementally(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """A lead's level, a deal's amount and a lead deletion (cascading) all show."""
    account = world.account(unit)
    lead = world.lead(unit, level="Cold", account=account)
    world.alias(unit, lead, "email", "x@example.com")
    world.event(unit, lead=lead, campaign="a")
    refresh(client)
    world.sql("UPDATE leads SET engagement_level = 'Hot' WHERE id = %s", (lead,))
    deal = world.deal(unit, account, amount="10.00")
    incremental(client)
    assert totals(client, headers) == {"a": (1, 1)}
    row = client.get("/analytics/campaigns", headers=headers).json()["campaigns"][0]
    assert (row["unique_leads"], row["pipeline_value"]) == (1, 10)
    (drill,) = client.get("/analytics/campaigns/a/leads", headers=headers).json()["leads"]
    assert (drill["email"], drill["deal_amount"]) == ("x@example.com", 10)

    world.sql("UPDATE deals SET amount = 25.5 WHERE id = %s", (deal,))
    world.sql("DELETE FROM leads WHERE id = %s", (lead,))
    incremental(client)
    row = client.get("/analytics/campaigns", headers=headers).json()["campaigns"][0]
    assert (row["total_events"], row["unique_leads"], row["mql_count"], row["pipeline_value"]) == (
        1,
        0,
        0,
        0,
    )
    assert client.get("/analytics/campaigns/a/leads", headers=headers).json()["leads"] == []


def test_an_event_moving_between_org_units(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """An update of org_unit_id removes the event from one snapshot and adds it to the other."""
    other = world.org_unit("Other")
    other_headers = world.reader(other)
    moved = world.event(unit, campaign="moving")
    refresh(client)
    world.sql("UPDATE events SET org_unit_id = %s WHERE id = %s", (other, moved))
    incremental(client)
    assert totals(client, headers) == {}
    assert totals(client, other_headers) == {"moving": (1, 0)}


def test_truncate_and_new_org_units_reload(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """TRUNCATE empties the snapshot; a new org unit gets one without a restart."""
    world.event(unit, campaign="a")
    refresh(client)
    world.sql("TRUNCATE events")
    newcomer = world.org_unit("New")
    world.event(newcomer, campaign="fresh")
    refresh(client)
    assert totals(client, headers) == {}
    assert totals(client, world.reader(newcomer)) == {"fresh": (1, 0)}


def test_bulk_writes_reload_the_org_unit_whole(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """A statement touching more than 10,000 events leaves one marker and still arrives."""
    refresh(client)
    world.sql(
        "INSERT INTO events (org_unit_id, event_type, occurred_at, metadata) "
        "SELECT %s, 'v', now(), '{\"utm_campaign\": \"bulk\"}' FROM generate_series(1, 10001)",
        (unit,),
    )
    markers = world.sql("SELECT count(*) FROM kenbun_analytics_changes WHERE event_id IS NULL")
    assert markers == [(1,)]
    incremental(client)
    assert totals(client, headers) == {"bulk": (10001, 0)}


def test_a_failing_refresh_keeps_the_last_good_snapshot(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """While the source fails, answers keep coming from the last snapshot; then it recovers."""
    world.event(unit, campaign="a")
    refresh(client)
    refresher: Refresher = client.app.state.refresher
    world.sql("ALTER TABLE events RENAME TO events_away")
    refresher.request_full()
    assert refresher.refresh(wait=True) is False
    assert totals(client, headers) == {"a": (1, 0)}
    health = client.get("/healthz").json()
    assert health["org_units"][0]["last_error"] or health["last_refresh_error"]
    assert "SELECT" not in client.get("/healthz").text
    world.sql("ALTER TABLE events_away RENAME TO events")
    world.event(unit, campaign="b")
    refresh(client)
    assert totals(client, headers) == {"a": (1, 0), "b": (1, 0)}
    assert client.get("/healthz").json()["last_refresh_error"] is None


def test_readiness_waits_for_the_first_snapshot(world: World, unit: str, client: Client) -> None:
    """/readyz is 503 until every org unit has a snapshot; /healthz is always 200."""
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    response = client.get("/analytics/campaigns", headers=world.reader(unit))
    assert response.status_code == 503
    assert response.json()["status"] == 503
    refresh(client)
    assert client.get("/readyz").status_code == 200
    health = client.get("/healthz").json()
    assert [u["org_unit_id"] for u in health["org_units"]] == [unit]
    assert health["org_units"][0]["snapshot_age_seconds"] >= 0


def test_no_session_is_left_idle_in_transaction(
    world: World, unit: str, client: Client, database_url: str
) -> None:
    """After many refreshes the service's connections are idle, never idle in transaction."""
    world.event(unit, campaign="a")
    for _ in range(5):
        refresh(client)
        world.event(unit, campaign="a")
    with psycopg.connect(database_url) as connection:
        states = connection.execute(
            "SELECT state FROM pg_stat_activity WHERE application_name LIKE 'kenbun-analytics%%'"
        ).fetchall()
    assert states
    assert all(state == ("idle",) for state in states)


def test_readers_see_one_whole_snapshot_during_swaps(
    world: World, unit: str, database_url: str
) -> None:
    """Concurrent readers during refreshes of changing data get one snapshot's answer each."""
    source = Source(database_url)
    store = SnapshotStore()
    refresher = Refresher(source, store, full_refresh_seconds=3600)
    lead = world.lead(unit, level="Hot")
    world.event(unit, lead=lead, campaign="a")
    refresher.refresh(wait=True)
    answers: set[bytes] = set()
    seen: list[bytes] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            snapshot = store.get(unit)
            seen.append(campaigns_body(snapshot, "campaign", None, None))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for step in range(12):
            answers.add(campaigns_body(store.get(unit), "campaign", None, None))
            # Each step writes the events and the lead level in one transaction.
            with psycopg.connect(database_url) as connection:
                connection.execute(
                    "INSERT INTO events (org_unit_id, lead_id, event_type, occurred_at, metadata) "
                    "VALUES (%s, %s, 'v', now(), '{\"utm_campaign\": \"a\"}')",
                    (unit, lead),
                )
                connection.execute(
                    "UPDATE leads SET engagement_level = %s WHERE id = %s",
                    ("Cold" if step % 2 else "Hot", lead),
                )
            assert refresher.refresh(wait=True)
        answers.add(campaigns_body(store.get(unit), "campaign", None, None))
    finally:
        stop.set()
        reader.join()
        source.close()
    assert seen
    assert set(seen) <= answers


def test_two_refreshes_never_overlap(world: World, unit: str, database_url: str) -> None:
    """A tick that finds a refresh running skips instead of running alongside it."""
    source = Source(database_url)
    refresher = Refresher(source, SnapshotStore(), full_refresh_seconds=3600)
    results: list[Any] = []
    with refresher._running:
        thread = threading.Thread(target=lambda: results.append(refresher.refresh()))
        thread.start()
        thread.join()
    assert results == [False]
    assert refresher.refresh() is True
    source.close()


def test_updating_ten_thousand_events_stays_incremental(
    world: World, unit: str, headers: dict[str, str], client: Client
) -> None:
    """An UPDATE of 10,000 events is listed event by event, not as a bulk marker."""
    world.sql(
        "INSERT INTO events (org_unit_id, event_type, occurred_at, metadata) "
        "SELECT %s, 'v', now(), '{\"utm_campaign\": \"a\"}' FROM generate_series(1, 10000)",
        (unit,),
    )
    refresh(client)
    world.sql(
        'UPDATE events SET metadata = \'{"utm_campaign": "b"}\' WHERE org_unit_id = %s', (unit,)
    )
    changes = world.sql(
        "SELECT count(*) FILTER (WHERE event_id IS NULL), count(*) FROM kenbun_analytics_changes "
        "WHERE xid = (SELECT max(xid) FROM kenbun_analytics_changes)"
    )
    assert changes == [(0, 10000)]
    incremental(client)
    assert totals(client, headers) == {"b": (10000, 0)}


def test_an_unexpected_error_is_logged_in_one_line_and_later_ticks_run(
    world: World, unit: str, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug inside a refresh keeps the last snapshot, logs one line without a traceback,
    and the next tick refreshes normally."""
    import logging

    class Flaky(Source):
        fail = True

        def org_unit_ids(self) -> list[str]:
            if self.fail:
                raise ZeroDivisionError("boom")
            return super().org_unit_ids()

    source = Flaky(database_url)
    store = SnapshotStore()
    refresher = Refresher(source, store, full_refresh_seconds=3600)
    world.event(unit, campaign="a")
    with caplog.at_level(logging.WARNING):
        assert refresher.refresh(wait=True) is False
    assert refresher.status.errors["*"] == "unexpected ZeroDivisionError"
    assert "Traceback" not in caplog.text
    assert len([r for r in caplog.records if r.name.startswith("kenbun")]) == 1
    source.fail = False
    assert refresher.refresh(wait=True) is True
    assert store.get(unit).layout.events.height == 1
    source.close()


def test_reader_threads_decode_at_a_lower_priority(database_url: str) -> None:
    """The threads that read and decode snapshots yield the CPU to requests."""
    refresher = Refresher(Source(database_url), SnapshotStore(), full_refresh_seconds=60)
    try:
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        theirs = refresher._readers.submit(
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        ).result()
        assert theirs == min(19, ours + READER_NICENESS)
    finally:
        refresher.close()
