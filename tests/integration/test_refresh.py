"""Snapshot refresh: changes arrive incrementally, failures keep the last good snapshot."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.engine.frames import KEYS
from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.refresh.child import ChildLoads, _Reader
from kenbun_analytics.refresh.full import load_unit, read_unit
from kenbun_analytics.refresh.handover import read_layout, write_layout
from kenbun_analytics.refresh.refresher import Refresher
from kenbun_analytics.source.postgres import Source
from kenbun_analytics.source.priority import LOAD_NICENESS, lower_server_process
from kenbun_analytics.store import SnapshotStore
from kenbun_analytics.web.answers import campaigns_body
from support.world import World, backend_waiting_on_lock, until
from tests.conftest import admin, refresh

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
    health = admin(client).get("/healthz").json()
    assert health["org_units"][0]["last_error"] or health["last_refresh_error"]
    assert "SELECT" not in admin(client).get("/healthz").text
    world.sql("ALTER TABLE events_away RENAME TO events")
    world.event(unit, campaign="b")
    refresh(client)
    assert totals(client, headers) == {"a": (1, 0), "b": (1, 0)}
    assert admin(client).get("/healthz").json()["last_refresh_error"] is None


def test_readiness_waits_for_the_first_snapshot(world: World, unit: str, client: Client) -> None:
    """/readyz is 503 until every org unit has its first snapshot; /healthz is always 200."""
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    response = client.get("/analytics/campaigns", headers=world.reader(unit))
    assert response.status_code == 503
    assert response.json()["status"] == 503
    refresh(client)
    assert client.get("/readyz").status_code == 200
    health = admin(client).get("/healthz").json()
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
        assert theirs == min(19, ours + LOAD_NICENESS)
    finally:
        refresher.close()


def assert_same_layout(got: Layout, expected: Layout, *, flags: bool = False) -> None:
    """Every frame and series of two layouts equal; with ``flags``, the columns'
    sortedness flags too (an all-null column is sorted either way)."""

    def known_sorted(frame: pl.DataFrame) -> list[dict[str, bool]]:
        return [c.flags for c in frame.iter_columns() if c.null_count() < c.len()]

    for name in ("events", "leads", "accounts"):
        got_frame, expected_frame = getattr(got, name), getattr(expected, name)
        assert got_frame.equals(expected_frame), name
        if flags:
            assert known_sorted(got_frame) == known_sorted(expected_frame), name
    assert got.details.frame().equals(expected.details.frame())
    for part in ("offsets", "buckets", "starts"):
        assert getattr(got.times, part).equals(getattr(expected.times, part)), part
    for key in (*KEYS, "lead_key"):
        assert got.dictionaries.of(key).equals(expected.dictionaries.of(key)), key
    assert got.indexes.keys() == expected.indexes.keys()
    for key, index in expected.indexes.items():
        assert got.indexes[key].rows.equals(index.rows), key
        assert got.indexes[key].offsets.equals(index.offsets), key
    for key in KEYS:
        assert got.days[key].equals(expected.days[key]), key
        assert got.codes[key] == expected.codes[key], key


def seed_unit(world: World, unit: str) -> None:
    """A little of everything a layout holds: accounts with deals, leads with and
    without facts, a lead of another org unit, events with and without keys."""
    account = world.account(unit)
    world.deal(unit, account, amount="1250.50", stage="closed_won")
    world.deal(unit, account, amount="99.99")
    hot = world.lead(unit, account=account, level="Hot", score=7)
    world.alias(unit, hot, "email", "hot@example.com", primary=True)
    cold = world.lead(unit, level="Cold", metadata={"first_name": "Cee"})
    stranger = world.lead(world.org_unit("Elsewhere"), level="Warm")
    for day, (lead, campaign, source) in enumerate(
        [
            (hot, "spring", "mail"),
            (cold, "spring", None),
            (stranger, "autumn", "ads"),
            (None, None, "ads"),
        ]
    ):
        world.event(
            unit,
            lead=lead,
            occurred_at=f"2026-03-{day + 10:02d}T08:00:00",
            metadata={"score_delta": 2.5 * day},
            campaign=campaign,
            source=source,
            medium="email",
        )


def test_a_load_in_a_child_process_builds_the_layout_a_load_here_builds(
    world: World, unit: str, database_url: str, tmp_path: Path
) -> None:
    """The child's layout crosses as files and arrives the same, frame for frame;
    the files keep which columns are known sorted."""
    seed_unit(world, unit)
    source = Source(database_url)
    try:
        with ThreadPoolExecutor(max_workers=2) as readers:
            here = load_unit(source, unit, 1, readers)
        with ChildLoads(source.options, 1) as child:
            there = child.load(unit)
            again = child.load(unit)  # the same child process answers the next load
    finally:
        source.close()
    assert here.events.height == 4
    assert_same_layout(there, here)
    assert_same_layout(again, here)
    times = there.times.series().to_list()
    assert times == sorted(times)
    write_layout(here, tmp_path)
    assert_same_layout(read_layout(tmp_path), here, flags=True)
    assert not multiprocessing.active_children(), "the child outlived its refresh"


def sessions(url: str, application_name: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_child_reads_the_next_org_unit_while_it_builds_and_closes_after_the_last(
    world: World, unit: str, database_url: str
) -> None:
    """Loads given the org units that come after them (each read ahead and
    submitted before its call) build the same layouts as loads here; the child
    keeps its connections for the next load and closes them after the last."""
    other, third = world.org_unit("Other"), world.org_unit("Third")
    for each in (unit, other, third):
        seed_unit(world, each)
    world.event(other, campaign="only-there")
    units = [unit, other, third]
    source = Source(database_url, application_name="kenbun-read-ahead")
    try:
        with ThreadPoolExecutor(max_workers=2) as readers:
            here = [load_unit(source, u, 1, readers) for u in units]
    finally:
        source.close()
    with ChildLoads(source.options, 1) as child:
        there = [child.load(u, units[index + 1 :]) for index, u in enumerate(units)]
        assert sessions(database_url, "kenbun-read-ahead") == 0
    for got, expected in zip(there, here, strict=True):
        assert_same_layout(got, expected)
    assert [layout.events.height for layout in there] == [4, 5, 4]


class CountingSource(Source):
    """A real Source that records whose events it read."""

    def __init__(self, url: str) -> None:
        super().__init__(url, application_name="kenbun-counting")
        self.read: list[str] = []

    def events_of(self, org_unit_id: str, *, part: int = 0, parts: int = 1) -> Any:
        self.read.append(org_unit_id)
        return super().events_of(org_unit_id, part=part, parts=parts)


def test_a_read_ahead_is_the_next_reads_when_asked_for_and_dropped_when_not(
    world: World, unit: str, database_url: str
) -> None:
    other = world.org_unit("Other")
    seed_unit(world, unit)
    world.event(other, campaign="only-there")
    source = CountingSource(database_url)
    reader = _Reader(source, 1)
    try:
        reader.read_ahead(other)
        ahead = reader.read(other)
        assert source.read == [other]
        reader.read_ahead(other)
        asked = reader.read(unit)
        assert source.read == [other, other, unit]
        with ThreadPoolExecutor(max_workers=2) as readers:
            for got, expected in ((ahead, other), (asked, unit)):
                assert [t.to_pylist() for t in got] == [
                    t.to_pylist() for t in read_unit(source, expected, 1, readers)
                ]
    finally:
        reader.close()
    assert sessions(database_url, "kenbun-counting") == 0


def test_a_child_load_failing_in_postgresql_keeps_the_last_good_snapshot(
    world: World, unit: str, database_url: str
) -> None:
    """A read that fails in the child arrives as the same SourceError text."""
    world.event(unit, campaign="a")
    store = SnapshotStore()
    source = Source(database_url, statement_timeout_seconds=1)
    refresher = Refresher(source, store, full_refresh_seconds=0, isolated_loads=True)
    assert refresher.refresh(wait=True)
    version = store.get(unit).version
    holder = psycopg.connect(database_url)
    try:
        holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        assert refresher.refresh(wait=True) is False
    finally:
        holder.close()
    error = refresher.status.errors[unit]
    assert error.startswith("load events failed: "), error
    assert "statement timeout" in error, error
    assert store.get(unit).version == version
    assert refresher.refresh(wait=True)
    assert store.get(unit).version > version
    refresher.close()
    source.close()


def test_a_child_load_that_dies_fails_its_org_unit_and_the_next_refresh_recovers(
    world: World, unit: str, database_url: str
) -> None:
    """The child runs at a lower priority and ignores SIGINT; killed mid-load, its
    org unit keeps the last good snapshot and the next refresh starts a new child."""
    world.event(unit, campaign="a")
    store = SnapshotStore()
    source = Source(database_url)
    refresher = Refresher(source, store, full_refresh_seconds=0, isolated_loads=True)
    assert refresher.refresh(wait=True)
    version = store.get(unit).version
    holder = psycopg.connect(database_url)
    holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(refresher.refresh(wait=True)))
    thread.start()
    try:
        until(lambda: backend_waiting_on_lock(database_url), 10, "the child waiting on the lock")
        (child,) = multiprocessing.active_children()
        assert child.pid is not None
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(
            19, os.getpriority(os.PRIO_PROCESS, 0) + LOAD_NICENESS
        )
        ignored = int(
            next(
                line.split()[1]
                for line in Path(f"/proc/{child.pid}/status").read_text().splitlines()
                if line.startswith("SigIgn:")
            ),
            16,
        )
        assert ignored & (1 << (signal.SIGINT - 1))
        # The server process it reads from is lowered as the child is.
        reading = backend_waiting_on_lock(database_url)
        assert reading is not None
        holding = holder.execute("SELECT pg_backend_pid()").fetchone()
        assert holding is not None
        assert os.getpriority(os.PRIO_PROCESS, reading) == min(
            19, os.getpriority(os.PRIO_PROCESS, holding[0]) + LOAD_NICENESS
        )
        os.kill(child.pid, signal.SIGKILL)
        thread.join(30)
    finally:
        holder.close()
    assert results == [False]
    assert (
        refresher.status.errors[unit] == f"the load process of org unit {unit} exited unexpectedly"
    )
    assert store.get(unit).version == version
    world.event(unit, campaign="b")
    assert refresher.refresh(wait=True)
    assert store.get(unit).layout.events.height == 2
    assert not multiprocessing.active_children()
    refresher.close()
    source.close()


def test_background_reads_lower_their_postgresql_process(database_url: str) -> None:
    """A Source for background reads lowers its server process (the embedded
    PostgreSQL runs under our OS user) by niceness and by its own autogroup,
    and runs without parallel workers; a plain Source leaves both alone."""
    plain = Source(database_url)
    background = Source(database_url, backend_niceness=LOAD_NICENESS)

    def server_of(source: Source) -> tuple[int, str]:
        row = source.query(
            "server",
            "SELECT pg_backend_pid() AS pid, "
            "current_setting('max_parallel_workers_per_gather') AS workers",
        ).to_pylist()[0]
        return row["pid"], row["workers"]

    def group_nice(pid: int) -> int:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])

    try:
        base, base_workers = server_of(plain)
        lowered, workers = server_of(background)
        assert (base_workers, workers) == ("2", "0")
        base_nice = os.getpriority(os.PRIO_PROCESS, base)
        assert os.getpriority(os.PRIO_PROCESS, lowered) == min(19, base_nice + LOAD_NICENESS)
        if Path("/proc/self/autogroup").exists():
            assert group_nice(lowered) == min(19, group_nice(base) + LOAD_NICENESS)
        # A pid whose title does not name the connection is never touched.
        assert not lower_server_process(base, "(1)")
        assert not lower_server_process(os.getpid(), "[local]")
        assert os.getpriority(os.PRIO_PROCESS, base) == base_nice
    finally:
        plain.close()
        background.close()
