"""Benchmark the snapshot layout and the endpoints against baselines in the same run.

    python -m benchmarks.run --events 100000        # < 2 minutes; part of CI
    python -m benchmarks.run --events 10000000      # manual; seeds once, then reuses

Data: ``kenbun-analytics seed`` (seed 1, history ending 2026-06-30) in an
embedded PostgreSQL under ``benchmarks/.data`` (or ``--database-url``): one
large org unit with 90% of the events, a lead per 10 events, an account per
100, a deal per 200, up to 2,000 skewed campaign values, 50 sources, 10
mediums, 5% normalized duplicates, and two small org units.

Measured on the large org unit, each as median, min and max over repeated
runs: the aggregate (uncached: query, collect and encode, as on a cache miss)
for each grouping over the whole range and a 30-day window, drilldowns of the
largest and of a small campaign, the baselines (PostgreSQL SQL, DuckDB, naive
Polars; each asserted to give the same rows), a full snapshot load,
incremental refreshes after 10,000 changed, new (arriving now, and an hour
late) and deleted events, snapshot
bytes per event (every frame, value index, day total, dictionary and lead
detail, text views counted: :func:`kenbun_analytics.engine.layout.resident_bytes`),
RSS drift over repeated refreshes, aggregate p99 while a refresh runs, the
cached-credential check, and (where ``wrk`` is installed) cached requests per
second against a constant route on the same server. Results go to
``benchmarks/results.json`` (one entry per size) and ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import psutil
import psycopg

from benchmarks import baselines
from kenbun_analytics.engine.encode import arrow_frame, raw_events_frame
from kenbun_analytics.engine.filters import Filters
from kenbun_analytics.engine.frames import ACCOUNT_DEALS, LEAD_FACTS
from kenbun_analytics.engine.layout import resident_bytes
from kenbun_analytics.engine.points import read_points
from kenbun_analytics.engine.zones import Interval
from kenbun_analytics.local import admin
from kenbun_analytics.local.embedded import EmbeddedPostgres, free_port
from kenbun_analytics.local.seed import org_unit_id, seed_world
from kenbun_analytics.refresh.refresher import Refresher
from kenbun_analytics.source.postgres import Source
from kenbun_analytics.store import SnapshotStore
from kenbun_analytics.web.answers import (
    Window,
    campaigns_body,
    leads_body,
    leads_page,
    timeseries_body,
    totals_body,
)
from kenbun_analytics.web.auth import Authenticator
from kenbun_analytics.web.params import parse_tz, parse_window, parse_zoned_window

HERE = Path(__file__).parent
SEED = 1
ANCHOR = date(2026, 6, 30)


def say(phase: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {phase}...", file=sys.stderr, flush=True)


def measure(function: Callable[[], Any], repeat: int, *, warm_up: bool = True) -> list[float]:
    if warm_up:
        function()  # first-call compilation, caches of the engines
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


FULL_LOADS = 3
"""Full loads measured (at most ``--repeat``)."""

LOAD_ROUNDS = 3
"""Rounds of the HTTP load test: every route once a round, the constant route first."""


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


def database(args: argparse.Namespace) -> tuple[str, EmbeddedPostgres | None]:
    """The benchmark database, seeded completely: a half-seeded one is recreated."""
    if args.database_url:
        ensure_seeded(args.database_url, args.events)
        return args.database_url, None
    server = EmbeddedPostgres(HERE / ".data" / "pg", port=None)
    admin_url = server.start()
    name = f"bench_{args.events}"
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin_url, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            if not seeded(url):
                connection.execute(f"DROP DATABASE {name} WITH (FORCE)")
                connection.execute(f"CREATE DATABASE {name}")
        else:
            connection.execute(f"CREATE DATABASE {name}")
    ensure_seeded(url, args.events)
    return url, server


def seeded(url: str) -> bool:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT to_regclass('benchmark_seeded') IS NOT NULL").fetchone()
        assert row is not None  # SELECT without FROM gives one row
        return bool(row[0])


def ensure_seeded(url: str, events: int) -> None:
    if seeded(url):
        print(f"reusing the seeded database ({events} events)", file=sys.stderr)
        # Each run's incremental measurements update, insert and delete about 90,000
        # events, leaving dead rows; autovacuum waits for a fifth of the table to be
        # dead, a dozen runs or more. Every run starts from a vacuumed table.
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("VACUUM (ANALYZE)")
        return
    source = Source(url, statement_timeout_seconds=3600)
    source.migrate()
    print(f"seeding {events} events...", file=sys.stderr)
    started = time.monotonic()
    seed_world(
        source,
        events=events,
        seed=SEED,
        anchor=ANCHOR,
        progress=lambda message: print(f"  {message}", file=sys.stderr),
    )
    source.execute("mark seeded", "CREATE TABLE benchmark_seeded (events bigint NOT NULL)")
    print(f"seeded in {time.monotonic() - started:.0f} s", file=sys.stderr)
    source.close()


def shape(url: str, unit: str) -> dict[str, int]:
    with psycopg.connect(url) as connection:

        def count(sql: str) -> int:
            return int(connection.execute(sql, (unit,)).fetchone()[0])  # type: ignore[index]

        return {
            "events (incl. normalized duplicates)": count(
                "SELECT count(*) FROM events WHERE org_unit_id = %s"
            ),
            "leads": count("SELECT count(*) FROM leads WHERE org_unit_id = %s"),
            "accounts": count("SELECT count(*) FROM accounts WHERE org_unit_id = %s"),
            "deals": count("SELECT count(*) FROM deals WHERE org_unit_id = %s"),
            "campaign values": count(
                "SELECT count(DISTINCT metadata->>'utm_campaign') FROM events WHERE org_unit_id = %s"
            ),
        }


def rows_of(body: bytes, key: str) -> list[dict[str, Any]]:
    from decimal import Decimal

    decoded: list[dict[str, Any]] = json.loads(body, parse_float=Decimal)[key]
    return decoded


def as_tuples(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    def instant(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return baselines.normalize(
        [
            (
                r["name"],
                r["total_events"],
                r["unique_leads"],
                r["mql_count"],
                r["total_points"],
                r["deals_count"],
                Decimal(str(r["pipeline_value"])),
                Decimal(str(r["closed_won_value"])),
                instant(r["first_event_at"]),
                instant(r["last_event_at"]),
            )
            for r in rows
        ]
    )


def comparable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = []
    for row in baselines.normalize(rows):
        first, last = row[8], row[9]
        out.append(
            (
                *row[:8],
                first.replace(tzinfo=UTC) if first.tzinfo is None else first.astimezone(UTC),
                last.replace(tzinfo=UTC) if last.tzinfo is None else last.astimezone(UTC),
            )
        )
    return out


def load_test(url: str, unit: str, seconds: int) -> dict[str, Any]:
    """Cached aggregate vs a constant route, same server, with wrk over loopback."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    source = Source(url)
    email = "bench@kenbun.example"
    admin.create_user(source, email, unit)
    admin.add_membership(source, email, unit, "analyst")
    token = admin.create_token(source, email, "bench").secret
    source.close()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server", "--database-url", url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            assert server.poll() is None, "benchmark server exited"
            assert time.monotonic() < deadline, "benchmark server not ready"
            try:
                import urllib.request

                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/readyz", timeout=2
                ) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        by_source = "/analytics/campaigns?group_by=source&start_date=2026-06-01"
        by_campaign = "/analytics/campaigns?start_date=2026-06-01"
        routes = (
            ("constant route", "/constant", "identity"),
            ("cached aggregate by source", by_source, "identity"),
            ("cached aggregate by campaign", by_campaign, "identity"),
            ("cached aggregate by source, gzip", by_source, "gzip"),
            ("cached aggregate by campaign, gzip", by_campaign, "gzip"),
        )

        def requests_per_second(path: str, encoding: str) -> tuple[float, int]:
            output = subprocess.run(
                [
                    wrk,
                    "-t2",
                    "-c32",
                    f"-d{seconds}s",
                    "-H",
                    f"Authorization: Bearer {token}",
                    "-H",
                    f"Accept-Encoding: {encoding}",
                    f"http://127.0.0.1:{port}{path}",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            match = re.search(r"Requests/sec:\s+([0-9.]+)", output)
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
            return (float(match.group(1)) if match else 0.0), int(errors.group(1)) if errors else 0

        # Rounds of every route, each route's ratio taken against the constant
        # route of its own round: the machine's pace drifts between runs.
        rounds = [
            {label: requests_per_second(path, encoding) for label, path, encoding in routes}
            for _ in range(LOAD_ROUNDS)
        ]
        results: dict[str, Any] = {}
        for label, _, _ in routes:
            rps = [one[label][0] for one in rounds]
            results[label] = {
                "rps": statistics.median(rps),
                "non_2xx": sum(one[label][1] for one in rounds),
            }
            if label != "constant route":
                ratios = [one[label][0] / one["constant route"][0] for one in rounds]
                results[label] |= {
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "rounds": len(ratios),
                }
        return results
    finally:
        server.terminate()
        server.wait(30)


def run_baselines(
    url: str, unit: str, source: Source, ours: list[tuple[Any, ...]], *, repeat: int, events: int
) -> dict[str, dict[str, float]]:
    """The three baselines on the whole range by campaign, each checked against our rows."""
    timings: dict[str, dict[str, float]] = {}
    raw_events = source.events_of(unit)
    raw_leads = source.leads_of(unit)
    raw_accounts = source.account_deals_of(unit)
    # The snapshot's events with the points read as ours are (the load reads score_delta as text).
    points = read_points(pl.Series(raw_events.column("score_delta"))).to_arrow()
    duck_events = raw_events.drop_columns(["score_delta"]).append_column("points", points)
    duck = baselines.DuckDB(duck_events, raw_leads, raw_accounts)
    events_frame = raw_events_frame(raw_events)
    leads_frame = arrow_frame(raw_leads, LEAD_FACTS)
    accounts_frame = arrow_frame(raw_accounts, ACCOUNT_DEALS)
    baseline_repeat = repeat if events <= 1_000_000 else 1
    contenders: tuple[tuple[str, Callable[[], Any], int], ...] = (
        (
            "baseline: naive Polars",
            lambda: baselines.naive_polars(
                events_frame,
                leads_frame,
                accounts_frame,
                group_by="campaign",
                start=None,
                end=None,
            ),
            repeat,
        ),
        ("baseline: DuckDB", lambda: duck.campaigns("campaign", None, None), baseline_repeat),
        (
            "baseline: PostgreSQL SQL",
            lambda: baselines.postgres(url, unit, "campaign", None, None),
            baseline_repeat,
        ),
    )
    for label, function, times in contenders:
        got = comparable(function())
        assert got == ours, f"{label} disagrees with the service"
        timings[f"{label} (aggregate by campaign, whole range)"] = summary(
            measure(function, times, warm_up=False)  # the check above warmed it up
        )
    return timings


DASHBOARD_DAYS = 180


def dashboard_timings(
    snapshot: Any, largest: str, repeat: int, checks: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """The targets of dashboards.md, in-process and uncached like the aggregates above:
    totals, daily/weekly/monthly time series of the top 10 campaigns, filtered
    aggregates, a deep page of leads, and the aggregate as CSV and Arrow."""
    timings: dict[str, dict[str, float]] = {}
    whole = Window("campaign", None, None)
    first_day = (ANCHOR - timedelta(days=DASHBOARD_DAYS - 1)).isoformat()
    last_day = ANCHOR.isoformat()

    def window_in(tz: str) -> Window:
        start, end = parse_zoned_window(first_day, last_day, parse_tz(tz)[1])
        return Window("campaign", start, end)

    timings["totals by campaign, whole range"] = summary(
        measure(lambda: totals_body(snapshot, whole), repeat)
    )
    series: tuple[tuple[str, Interval], ...] = (
        ("UTC", "day"),
        ("America/New_York", "day"),
        ("UTC", "week"),
        ("UTC", "month"),
    )
    for tz, interval in series:
        window = window_in(tz)
        timings[f"time series, top 10 campaigns, {DASHBOARD_DAYS} days by {interval}, {tz}"] = (
            summary(
                measure(
                    functools.partial(
                        timeseries_body,
                        snapshot,
                        window=window,
                        tz_name=tz,
                        interval=interval,
                        names=[],
                    ),
                    repeat,
                )
            )
        )
    sources = rows_of(campaigns_body(snapshot, "source", None, None), "campaigns")
    one_source = Filters.of(source=[sources[0]["name"]])
    one_campaign = Filters.of(campaign=[largest])
    timings["aggregate by campaign, filtered to one source"] = summary(
        measure(
            lambda: campaigns_body(snapshot, "campaign", None, None, filters=one_source), repeat
        )
    )
    timings["aggregate by campaign, filtered to one campaign"] = summary(
        measure(
            lambda: campaigns_body(snapshot, "campaign", None, None, filters=one_campaign), repeat
        )
    )
    first = leads_page(snapshot, window=whole, campaign_name=largest)
    checks["leads of the largest campaign (X-Total-Count)"] = int(
        dict(first.headers)["X-Total-Count"]
    )
    timings["drilldown page, largest campaign, offset 0"] = summary(
        measure(lambda: leads_page(snapshot, window=whole, campaign_name=largest), repeat)
    )
    timings["drilldown page, largest campaign, offset 2000"] = summary(
        measure(
            lambda: leads_page(snapshot, window=whole, campaign_name=largest, offset=2000),
            repeat,
        )
    )
    for fmt in ("json", "csv", "arrow"):
        timings[f"aggregate by campaign, whole range, as {fmt}"] = summary(
            measure(
                functools.partial(campaigns_body, snapshot, "campaign", None, None, fmt=fmt), repeat
            )
        )
    return timings


def run(args: argparse.Namespace) -> dict[str, Any]:
    url, server = database(args)
    try:
        unit = org_unit_id(SEED, 0)
        result: dict[str, Any] = {
            "events": args.events,
            "shape": shape(url, unit),
            "timings": {},
            "checks": {},
        }
        timings = result["timings"]
        source = Source(
            url, statement_timeout_seconds=3600, connections=3
        )  # up to 2 event parts + facts
        store = SnapshotStore()
        refresher = Refresher(source, store, full_refresh_seconds=10**9, isolated_loads=True)

        def full_load(loader: Refresher) -> float:
            started = time.perf_counter()
            assert loader.refresh(wait=True), loader.status.errors
            return time.perf_counter() - started

        def another_full_load(parts: int) -> float:
            """A full load by a refresher of its own (the benchmark's keeps its snapshot)."""
            loader = Refresher(
                source,
                SnapshotStore(),
                full_refresh_seconds=10**9,
                load_parts=parts,
                isolated_loads=True,
            )
            try:
                return full_load(loader)
            finally:
                loader.close()

        # The first load after the database started may read from a cold page cache;
        # the median of three says what a load takes, the max what the first took.
        say("full snapshot loads")
        timings["snapshot: full load, all org units"] = summary(
            [full_load(refresher)]
            + [another_full_load(1) for _ in range(min(FULL_LOADS, args.repeat) - 1)]
        )
        say("full snapshot load, events read on 2 connections")
        timings["snapshot: full load, events read on 2 connections"] = summary(
            [another_full_load(2)]
        )
        snapshot = store.get(unit)
        layout = snapshot.layout
        counted = layout.events.height
        size = resident_bytes(layout)
        result["checks"]["counting events in snapshot"] = counted
        result["checks"]["snapshot bytes per counting event"] = round(size / max(counted, 1), 1)

        say("aggregates and drilldowns")
        window_30 = parse_window("2026-06-01", "2026-06-30")
        whole = (None, None)
        repeat = args.repeat
        for group_by in ("campaign", "source", "medium"):

            def over_whole(g: str = group_by) -> bytes:
                return campaigns_body(snapshot, g, *whole)

            def over_30_days(g: str = group_by) -> bytes:
                return campaigns_body(snapshot, g, *window_30)

            timings[f"aggregate by {group_by}, whole range"] = summary(measure(over_whole, repeat))
            timings[f"aggregate by {group_by}, 30-day window"] = summary(
                measure(over_30_days, repeat)
            )

        campaigns = rows_of(campaigns_body(snapshot, "campaign", *whole), "campaigns")
        largest, small = campaigns[0]["name"], campaigns[len(campaigns) * 3 // 4]["name"]
        result["checks"]["drilldown values (events)"] = {
            largest: campaigns[0]["total_events"],
            small: campaigns[len(campaigns) * 3 // 4]["total_events"],
        }
        timings["drilldown, largest campaign"] = summary(
            measure(lambda: leads_body(snapshot, "campaign", largest, *whole), repeat)
        )
        timings["drilldown, small campaign"] = summary(
            measure(lambda: leads_body(snapshot, "campaign", small, *whole), repeat)
        )

        say("dashboards: filters, totals, time series, pages, formats")
        timings.update(dashboard_timings(snapshot, largest, repeat, result["checks"]))

        # Baselines on the whole range by campaign, each checked against our rows.
        say("baselines")
        # In a function of its own, so the baselines' copies of the data are freed
        # before the RSS figures below.
        timings.update(
            run_baselines(
                url, unit, source, as_tuples(campaigns), repeat=repeat, events=args.events
            )
        )
        result["checks"]["baselines agree with the service"] = True

        # Incremental refreshes: 10,000 changed events (the same ones each time, their
        # utm_medium flipped between two values that no seeded event has, so that every
        # time really changes them), then 10,000 events arriving after the last one,
        # then those deleted again (which leaves the database as it was).
        say("incremental refreshes")

        def incremental(sql: str) -> float:
            with psycopg.connect(url, autocommit=True) as connection:
                connection.execute(sql, {"unit": unit})
            started = time.perf_counter()
            assert refresher.refresh(wait=True)
            assert refresher.status.last_kind == "incremental"
            return time.perf_counter() - started

        flip = (
            "UPDATE events SET metadata = metadata || jsonb_build_object('utm_medium', "
            "CASE WHEN metadata ->> 'utm_medium' = 'bench-changed' "
            "THEN 'bench-changed-again' ELSE 'bench-changed' END) WHERE id IN "
            "(SELECT id FROM events WHERE org_unit_id = %(unit)s ORDER BY id LIMIT 10000)"
        )
        timings["snapshot: incremental refresh after 10,000 changed events"] = summary(
            [incremental(flip) for _ in range(max(3, repeat))]
        )

        def arrive(offset: str) -> str:
            return (
                "INSERT INTO events (org_unit_id, lead_id, event_type, occurred_at, metadata) "
                "SELECT org_unit_id, lead_id, 'bench-new', "
                "(SELECT max(occurred_at) FROM events WHERE org_unit_id = %(unit)s) "
                f"+ interval '{offset}', metadata "
                "FROM events WHERE org_unit_id = %(unit)s ORDER BY id DESC LIMIT 10000"
            )

        delete = "DELETE FROM events WHERE event_type = 'bench-new'"
        timings["snapshot: incremental refresh after 10,000 new events"] = summary(
            [incremental(arrive("1 second"))]
        )
        timings["snapshot: incremental refresh after 10,000 deleted events"] = summary(
            [incremental(delete)]
        )
        # Late: an hour before the last event, so they go in among the last rows.
        timings["snapshot: incremental refresh after 10,000 new events an hour late"] = summary(
            [incremental(arrive("-1 hour"))]
        )
        incremental(delete)

        # Query latency while a refresh runs, against idle.
        say("latency during a refresh")
        snapshot = store.get(unit)

        def latencies(count: int) -> list[float]:
            return measure(lambda: campaigns_body(snapshot, "campaign", *window_30), count)

        idle = latencies(60)
        busy: list[float] = []
        refresher.request_full()
        worker = threading.Thread(target=lambda: refresher.refresh(wait=True))
        worker.start()
        while worker.is_alive() and len(busy) < 400:
            busy.extend(latencies(5))
        worker.join()

        def quantile(xs: list[float]) -> float:
            return statistics.quantiles(xs, n=100)[98]

        result["checks"]["aggregate p99 idle / during a refresh (ms)"] = [
            round(quantile(idle) * 1000, 1),
            round(quantile(busy) * 1000, 1) if len(busy) >= 10 else None,
        ]

        # RSS over repeated full refreshes: after the first of them and after the last.
        say(f"{args.refreshes} full refreshes")
        refresher.request_full()
        assert refresher.refresh(wait=True)
        rss_first = psutil.Process().memory_info().rss
        for _ in range(args.refreshes - 1):
            refresher.request_full()
            assert refresher.refresh(wait=True)
        rss_last = psutil.Process().memory_info().rss
        result["checks"][f"RSS after 1 / {args.refreshes} full refreshes (MiB)"] = [
            round(rss_first / 2**20),
            round(rss_last / 2**20),
        ]

        # Credential check on the hot path (cached).
        authenticator = Authenticator(source, cache_seconds=2)
        user_source = Source(url)
        admin.create_user(user_source, "hot@kenbun.example", unit)
        admin.add_membership(user_source, "hot@kenbun.example", unit, "analyst")
        header = "Bearer " + admin.create_token(user_source, "hot@kenbun.example", "hot").secret
        user_source.close()
        authenticator.authenticate(header)
        samples = measure(lambda: [authenticator.cached(header) for _ in range(1000)], 5)
        result["checks"]["cached credential check (µs)"] = round(
            statistics.median(samples) * 1000, 2
        )
        source.close()

        say("load test")
        result["load test"] = load_test(url, unit, args.load_seconds)
        return result
    finally:
        if server is not None:
            server.stop()


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "python": platform.python_version(),
        "polars": pl.__version__,
        "polars threads": str(pl.thread_pool_size()),
    }


def spread(measured: dict[str, Any]) -> str:
    """The range of a load test's per-round ratios."""
    return (
        f", {measured['ratio_min']:.0%} to {measured['ratio_max']:.0%}"
        f" over {measured['rounds']} rounds"
    )


def write_markdown(output_dir: Path) -> None:
    """RESULTS.md from ``results.json`` and, where present, ``scale.json``
    (:mod:`benchmarks.scale_results`)."""
    from benchmarks.scale_results import SCALE_JSON, section

    store, scale = output_dir / "results.json", output_dir / SCALE_JSON.name
    text = markdown(json.loads(store.read_text())) if store.exists() else "# Benchmark results\n"
    if scale.exists():
        text = text.rstrip("\n") + "\n\n" + "\n".join(section(json.loads(scale.read_text())))
    (output_dir / "RESULTS.md").write_text(text.rstrip("\n") + "\n")


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m benchmarks.run`; see the docstring of `benchmarks/harness.py` for what is measured.",
        "Times are milliseconds; ratios compare with our aggregate by campaign over the whole range, "
        "measured in the same run.",
        "",
    ]
    for size in sorted(results, key=int):
        entry = results[size]
        lines += [
            f"## {int(size):,} events",
            "",
            f"Run at {entry['at']} on {entry['machine']['cpu']} "
            f"({entry['machine']['cores']} cores, {entry['machine']['memory']}), Python "
            f"{entry['machine']['python']}, Polars {entry['machine']['polars']} "
            f"({entry['machine']['polars threads']} threads).",
            "",
            "Data shape (the large org unit): "
            + ", ".join(f"{v:,} {k}" for k, v in entry["shape"].items())
            + ".",
            "",
            "| measurement | median | min | max | runs | ours is faster by |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        ours = entry["timings"]["aggregate by campaign, whole range"]["median"]
        for name, t in entry["timings"].items():
            ratio = f"{t['median'] / ours:,.1f}x" if name.startswith("baseline") else ""
            lines.append(
                f"| {name} | {t['median'] * 1000:,.1f} ms | {t['min'] * 1000:,.1f} ms | "
                f"{t['max'] * 1000:,.1f} ms | {t['n']} | {ratio} |"
            )
        lines += ["", "| check | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in entry["checks"].items()]
        load = entry.get("load test", {})
        if "skipped" in load:
            lines += [f"| load test | skipped: {load['skipped']} |"]
        elif load:
            lines += [
                f"| wrk -c32, constant route (req/s) | {load['constant route']['rps']:,.0f} |"
            ]
            lines += [
                f"| wrk -c32, {label} (req/s) | {load[label]['rps']:,.0f} ({load[label]['ratio']:.0%} of "
                f"the constant route{spread(load[label])}; non-2xx: {load[label]['non_2xx']}) |"
                for label in load
                if isinstance(load[label], dict) and "ratio" in load[label]
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=100_000, help="events to seed (default 100000)"
    )
    parser.add_argument(
        "--database-url", default=None, help="use this PostgreSQL instead of the embedded one"
    )
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement (default 7)")
    parser.add_argument(
        "--refreshes", type=int, default=20, help="refreshes for the RSS check (default 20)"
    )
    parser.add_argument(
        "--load-seconds",
        type=int,
        default=3,
        help=f"wrk duration per route and round, {LOAD_ROUNDS} rounds (default 3)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=HERE,
        help="where RESULTS.md and results.json are written (default: benchmarks/)",
    )
    args = parser.parse_args()
    result = run(args)
    result["machine"] = machine()
    result["at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    store = args.output_dir / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    results[str(args.events)] = result
    store.write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_markdown(args.output_dir)
    print(markdown({str(args.events): result}))


if __name__ == "__main__":
    main()
