"""Refresh once, serve from many: what a snapshot directory costs and buys.

    python -m benchmarks.scale --events 100000
    python -m benchmarks.scale --events 1000000 --data-dir /tmp/kenbun-scale

Data: ``kenbun-analytics seed`` (seed 1, history ending 2026-06-30) in an
embedded PostgreSQL of its own under ``--data-dir`` (seeded once, then reused).

Measured, each a median over ``--rounds``:

* publish: the largest org unit's layout written as a version (files, fsyncs,
  SHA-256, rename, pointer) and opened again mapped (checksums verified),
  next to the full load that built it;
* query latency: the aggregate by source and by campaign (uncached) over the
  heap-held layout and over the same version mapped, p50 and p99;
* a follower's poll of the pointers when nothing changed;
* readiness: ``serve`` from process start to ``/readyz`` 200, alone (a full
  load) and as a new replica beside a refresher that has published;
* memory: the summed PSS and RSS of every process of the service (the
  supervisor, its workers, the fork server of full loads) with ``--workers 1``
  and ``--workers 2``, and without a snapshot directory, at rest after the same
  requests; the snapshot's bytes on disk; the PSS target read two ways
  (:func:`pss_target`);
* throughput: the cached aggregate by source with ``wrk -t2 -c32`` against
  ``--workers 1`` and ``--workers 2`` (where wrk is installed);
* takeover: two replicas on one directory; the refresher is SIGKILLed, or
  SIGSTOPped (its connection left open and silent, as a host cut off leaves
  it), and an event inserted at once; seconds until the survivor has published
  a version with it (the target: two refresh intervals). A new replica
  replaces the signalled one before the next round.

Prints a Markdown table; ``--json`` writes the figures too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg

from benchmarks import scale_results
from kenbun_analytics.local import admin
from kenbun_analytics.local.embedded import EmbeddedPostgres, free_port
from kenbun_analytics.local.seed import seed_world
from kenbun_analytics.refresh.full import load_unit
from kenbun_analytics.refresh.published import PublishedStore
from kenbun_analytics.source.postgres import Source
from kenbun_analytics.store import Snapshot
from kenbun_analytics.web.answers import campaigns_body

ANCHOR = date(2026, 6, 30)
BY_SOURCE = "/analytics/campaigns?group_by=source&start_date=2026-06-01"
WARM_ROUTES = (
    BY_SOURCE,
    "/analytics/campaigns?group_by=campaign",
    "/analytics/campaigns?group_by=medium",
    "/analytics/campaigns?group_by=source&start_date=2026-01-01&end_date=2026-03-31",
)
"""Answered before memory is measured: the whole range by each key, so that most
of the snapshot's pages have been read."""


REFRESH_SECONDS = 5.0
"""The refresh interval of every ``serve`` started here."""
SETTLE_SECONDS = 3.0
"""Between the last request and a memory reading: Polars' allocator returns
freed pages to the system on a background thread 0.5 s (dirty) plus 1 s (lazily
freed) after they are freed, so the reading is of what a process holds at rest,
not of the last answer's temporaries."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def database(data_dir: Path, events: int) -> tuple[str, EmbeddedPostgres]:
    server = EmbeddedPostgres(data_dir / "pg")
    admin_url = server.start()
    name = f"scale_{events}"
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(f"CREATE DATABASE {name}")
    source = Source(url, statement_timeout_seconds=3600)
    source.migrate()
    with psycopg.connect(url) as connection:
        seeded = connection.execute("SELECT count(*) FROM org_units").fetchone()
    if not seeded or not seeded[0]:
        say(f"seeding {events} events...")
        started = time.monotonic()
        seed_world(source, events=events, seed=1, anchor=ANCHOR)
        say(f"seeded in {time.monotonic() - started:.0f} s")
    source.close()
    return url, server


def largest_unit(url: str) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT org_unit_id::text FROM events GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    return str(row[0])


def timed(function: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def in_process(url: str, unit: str, rounds: int, scratch: Path) -> dict[str, Any]:
    """Publish and open costs, query latency heap vs mapped, a poll's cost."""
    source = Source(url, statement_timeout_seconds=3600)
    with ThreadPoolExecutor(2) as readers:
        load_seconds, layout = timed(lambda: load_unit(source, unit, 1, readers), 1)
    source.close()
    store = PublishedStore(scratch / "store", grace_seconds=3600)
    at = datetime.now(UTC)
    publish_seconds, pointer = timed(
        lambda: store.publish(layout, org_unit_id=unit, taken_at=at, position="1", full_at=at),
        rounds,
    )
    open_seconds, mapped = timed(lambda: store.open(pointer), rounds)
    version_bytes = sum(
        path.stat().st_size
        for path in (scratch / "store" / unit / f"v{pointer.version:020d}").iterdir()
    )
    latency: dict[str, Any] = {}
    for group_by in ("source", "campaign"):
        for name, held in (("heap", layout), ("mapped", mapped)):
            snapshot = Snapshot(unit, at, 1, held)
            samples = []
            for _ in range(max(30, rounds * 10)):
                started = time.perf_counter()
                campaigns_body(snapshot, group_by, None, None)
                samples.append(time.perf_counter() - started)
            p50, p99 = percentiles(samples)
            latency[f"{group_by} {name}"] = {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000}
        assert campaigns_body(Snapshot(unit, at, 1, layout), group_by, None, None) == (
            campaigns_body(Snapshot(unit, at, 1, mapped), group_by, None, None)
        )
    poll_samples = []
    for _ in range(1000):
        started = time.perf_counter()
        for each in store.units():
            store.newest(each)
        poll_samples.append(time.perf_counter() - started)
    return {
        "full load seconds": load_seconds,
        "publish seconds": publish_seconds,
        "open mapped seconds": open_seconds,
        "version bytes": version_bytes,
        "latency": latency,
        "poll microseconds": statistics.median(poll_samples) * 1e6,
    }


@contextmanager
def serving(
    url: str, *extra: str, log: Path | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int, float]]:
    """A ``serve`` process; yields it, its port and seconds from start to ready."""
    port, admin_port = free_port(), free_port()
    started = time.monotonic()
    output = log.open("ab") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kenbun_analytics.cli",
            "serve",
            "--database-url",
            url,
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
            "--refresh-seconds",
            str(REFRESH_SECONDS),
            *extra,
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KENBUN_ACCESS_LOG": "off"},
    )
    try:
        while True:
            assert process.poll() is None, "serve exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.05)
        yield process, port, time.monotonic() - started
    finally:
        process.terminate()
        process.wait(60)


def mapped_snapshot(pid: int, store: Path | None) -> tuple[int, int]:
    """RSS and PSS (bytes) of the process's mappings of files under ``store``."""
    if store is None:
        return 0, 0
    rss = pss = 0
    inside = False
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                inside = len(fields) >= 6 and fields[5].startswith(str(store))
            elif inside and fields[0] == "Rss:":
                rss += int(fields[1]) * 1024
            elif inside and fields[0] == "Pss:":
                pss += int(fields[1]) * 1024
    return rss, pss


def memory(process: subprocess.Popen[bytes], store: Path | None = None) -> dict[str, float]:
    """Summed PSS, RSS and anonymous memory (MB) of every process of the service
    (the ``serve`` process, its workers, the refresher's fork server of full
    loads, multiprocessing's resource tracker), of their mappings of the snapshot
    directory, and of the fork server alone (idle between full loads)."""
    root = psutil.Process(process.pid)
    processes = [root, *root.children(recursive=True)]
    totals = dict.fromkeys(
        ("pss", "rss", "anonymous", "snapshot_rss", "snapshot_pss", "fork_server_pss"), 0
    )
    for each in processes:
        rollup = {}
        with open(f"/proc/{each.pid}/smaps_rollup") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) >= 2 and fields[1].isdigit():
                    rollup[fields[0].rstrip(":")] = int(fields[1]) * 1024
        totals["pss"] += rollup["Pss"]
        totals["rss"] += rollup["Rss"]
        totals["anonymous"] += rollup["Anonymous"]
        if "forkserver" in " ".join(each.cmdline()):
            totals["fork_server_pss"] += rollup["Pss"]
        rss, pss = mapped_snapshot(each.pid, store)
        totals["snapshot_rss"] += rss
        totals["snapshot_pss"] += pss
    return {f"{name}_mb": value / 1e6 for name, value in totals.items()} | {
        "processes": len(processes)
    }


def pss_target(results: dict[str, Any], version_bytes: int) -> dict[str, Any]:
    """PSS(2) <= 2 x PSS(1) - snapshot, read two ways: PSS(1) as one process of
    this build serving the mapped directory, less the snapshot pages it had
    resident; and PSS(1) as the process without a directory (the snapshot in its
    heap), less the version's bytes."""
    two = results["memory, --workers 2"]["pss_mb"]
    one = results["memory, --workers 1"]
    heap = results["memory, no snapshot directory"]["pss_mb"]
    mapped_limit = 2 * one["pss_mb"] - one["snapshot_pss_mb"]
    heap_limit = 2 * heap - version_bytes / 1e6
    return {
        "PSS(2) MB": two,
        "limit, PSS(1) mapped (MB)": mapped_limit,
        "met, PSS(1) mapped": two <= mapped_limit,
        "limit, PSS(1) without a directory (MB)": heap_limit,
        "met, PSS(1) without a directory": two <= heap_limit,
    }


def token_for(url: str, unit: str) -> str:
    source = Source(url)
    email = f"scale-{time.time_ns()}@kenbun.example"
    admin.create_user(source, email, unit)
    admin.add_membership(source, email, unit, "analyst")
    secret = admin.create_token(source, email, "scale").secret
    source.close()
    return str(secret)


def warm(port: int, token: str, times: int = 200) -> None:
    """``times`` answers of the aggregate, each on a new connection (so every worker
    answers some); a worker still mapping its first versions answers 503 and is
    asked again."""
    answered, deadline = 0, time.monotonic() + 120
    while answered < times:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{WARM_ROUTES[answered % len(WARM_ROUTES)]}",
            headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            answered += 1
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def rps(port: int, token: str, seconds: int) -> float:
    wrk = shutil.which("wrk")
    if wrk is None:
        return float("nan")
    output = subprocess.run(
        [
            wrk,
            "-t2",
            "-c32",
            f"-d{seconds}s",
            "-H",
            f"Authorization: Bearer {token}",
            f"http://127.0.0.1:{port}{BY_SOURCE}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    return float(match.group(1)) if match else 0.0


def insert_event(url: str, unit: str) -> int:
    """One more event in ``unit``, a copy of its newest under a new id; that id."""
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "INSERT INTO events (org_unit_id, lead_id, event_type, occurred_at, metadata)"
            " SELECT org_unit_id, lead_id, event_type, occurred_at, metadata FROM events"
            " WHERE org_unit_id = %s ORDER BY id DESC LIMIT 1 RETURNING id",
            (unit,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def takeover(
    url: str, unit: str, rounds: int, scratch: Path, log: Path, *, how: signal.Signals
) -> list[float]:
    """Seconds from signalling the refresher (``how``: SIGKILL, or SIGSTOP, which
    leaves its connection open and silent as a host cut off does) to the
    survivor's next version of ``unit``, once per round."""
    store = scratch / "takeover"
    shutil.rmtree(store, ignore_errors=True)
    pointer = store / unit / "newest.json"

    def newest() -> tuple[int, str]:
        version = json.loads(pointer.read_text())["version"]
        manifest = json.loads((store / unit / f"v{version:020d}" / "manifest.json").read_text())
        return version, str(manifest["publisher"]).rsplit(":", 1)[1]

    samples: list[float] = []
    inserted: list[int] = []
    try:
        with ExitStack() as replicas:
            alive = [replicas.enter_context(serving(url, "--snapshot-dir", str(store), log=log))[0]]
            for _ in range(rounds):
                alive.append(
                    replicas.enter_context(serving(url, "--snapshot-dir", str(store), log=log))[0]
                )
                version, publisher = newest()
                refresher = next(p for p in alive if str(p.pid) == publisher)
                refresher.send_signal(how)
                killed = time.monotonic()
                inserted.append(insert_event(url, unit))
                while newest()[0] == version:
                    assert time.monotonic() - killed < 120, "no replica took over"
                    time.sleep(0.01)
                samples.append(time.monotonic() - killed)
                refresher.send_signal(signal.SIGCONT)
                refresher.kill()
                refresher.wait()
                alive.remove(refresher)
                assert newest()[1] == str(alive[0].pid)
    finally:
        with psycopg.connect(url) as connection:
            connection.execute("DELETE FROM events WHERE id = ANY(%s)", (inserted,))
    return samples


def processes(url: str, unit: str, rounds: int, seconds: int, scratch: Path) -> dict[str, Any]:
    token = token_for(url, unit)
    log = scratch / "serve.log"
    results: dict[str, Any] = {}
    with serving(url, log=log) as (process, port, ready):
        results["ready, full load (s)"] = ready
        warm(port, token)
        time.sleep(SETTLE_SECONDS)
        results["memory, no snapshot directory"] = memory(process)
    store = scratch / "served"
    for workers in (1, 2):
        shutil.rmtree(store, ignore_errors=True)
        assert not store.exists(), f"{store} could not be emptied"
        with serving(url, "--snapshot-dir", str(store), "--workers", str(workers), log=log) as (
            process,
            port,
            ready,
        ):
            results[f"ready, --workers {workers}, empty store (s)"] = ready
            time.sleep(2)  # every worker has mapped the version
            warm(port, token)
            time.sleep(SETTLE_SECONDS)
            results[f"memory, --workers {workers}"] = memory(process, store)
            results[f"rps, --workers {workers}"] = statistics.median(
                rps(port, token, seconds) for _ in range(rounds)
            )
    shutil.rmtree(store, ignore_errors=True)
    with serving(url, "--snapshot-dir", str(store), log=log):
        samples = []
        for _ in range(rounds):
            with serving(url, "--snapshot-dir", str(store), log=log) as (_, _, ready):
                samples.append(ready)
        results["ready, new replica from a populated store (s)"] = statistics.median(samples)
    held = 0
    for pointer in store.glob("*/newest.json"):
        version = json.loads(pointer.read_text())["version"]
        held += sum(path.stat().st_size for path in (pointer.parent / f"v{version:020d}").iterdir())
    results["snapshot bytes on disk, newest versions"] = held
    results["PSS target"] = pss_target(results, held)
    shutil.rmtree(store, ignore_errors=True)
    for how in (signal.SIGKILL, signal.SIGSTOP):
        samples = takeover(url, unit, rounds, scratch, log, how=how)
        results[f"takeover after {how.name} of the refresher (s)"] = {
            "median": statistics.median(samples),
            "max": max(samples),
            "refresh interval": REFRESH_SECONDS,
        }
    return results


def markdown(events: int, figures: dict[str, Any]) -> str:
    lines = [f"## {events:,} events", "", "| measurement | value |", "|---|---|"]

    def rows(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                rows(f"{prefix}{key}, " if prefix else f"{key}, ", inner)
        elif isinstance(value, bool):
            lines.append(f"| {prefix.rstrip(', ')} | {'yes' if value else 'no'} |")
        elif isinstance(value, float):
            lines.append(f"| {prefix.rstrip(', ')} | {value:,.3f} |")
        else:
            lines.append(f"| {prefix.rstrip(', ')} | {value:,} |")

    rows("", figures)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "kenbun-scale"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per round")
    parser.add_argument("--skip-processes", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=scale_results.HERE,
        help="where scale.json and RESULTS.md are written (default: benchmarks/)",
    )
    args = parser.parse_args()
    args.data_dir = args.data_dir.resolve()  # the mappings in /proc/<pid>/smaps are absolute
    args.data_dir.mkdir(parents=True, exist_ok=True)
    url, server = database(args.data_dir, args.events)
    scratch = Path(tempfile.mkdtemp(prefix="kenbun-scale-", dir=args.data_dir))
    try:
        unit = largest_unit(url)
        say("in process: load, publish, open, latency")
        figures: dict[str, Any] = {"in process": in_process(url, unit, args.rounds, scratch)}
        say(json.dumps(figures))
        if not args.skip_processes:
            say("processes: readiness, memory, throughput")
            figures["processes"] = processes(url, unit, args.rounds, args.seconds, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        server.stop()
    print(markdown(args.events, figures))
    if not args.skip_processes:
        scale_results.record("scale", args.events, figures, args.output_dir)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
