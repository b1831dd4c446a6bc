"""Full loads under churn: PostgreSQL's full loads with one replica, and with three
replicas plus a fourth process killed (SIGKILL) and started again on a period.

    python -m benchmarks.churn --events 100000 --minutes 10 --every 60

Data: ``kenbun-analytics seed`` in an embedded PostgreSQL of its own (as
:mod:`benchmarks.scale`). Each run starts from an empty snapshot directory and
an empty load counter; the loads are counted in PostgreSQL
(``kenbun_analytics_full_loads``), not in any process's logs. With a full
reconciliation every ``--full-refresh-seconds``, both runs should count the same.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from benchmarks import scale_results
from benchmarks.scale import database
from kenbun_analytics.local.embedded import free_port


def start(url: str, store: Path, full_refresh_seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kenbun_analytics.cli",
            "serve",
            "--database-url",
            url,
            "--port",
            str(free_port()),
            "--admin-port",
            str(free_port()),
            "--snapshot-dir",
            str(store),
            "--refresh-seconds",
            "5",
            "--full-refresh-seconds",
            str(full_refresh_seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "KENBUN_ACCESS_LOG": "off"},
    )


def loads(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM kenbun_analytics_full_loads").fetchone()
    return int(row[0]) if row else 0


def run(url: str, scratch: Path, args: argparse.Namespace, *, churn: bool) -> int:
    """Full loads counted during one run of ``args.minutes``."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("TRUNCATE kenbun_analytics_full_loads")
    store = scratch / ("churn" if churn else "single")
    shutil.rmtree(store, ignore_errors=True)
    steady = [start(url, store, args.full_refresh_seconds) for _ in range(3 if churn else 1)]
    churned = start(url, store, args.full_refresh_seconds) if churn else None
    ends = time.monotonic() + args.minutes * 60
    try:
        while time.monotonic() < ends:
            time.sleep(min(args.every, max(0.0, ends - time.monotonic())))
            if churned is not None and time.monotonic() < ends:
                churned.send_signal(signal.SIGKILL)
                churned.wait()
                churned = start(url, store, args.full_refresh_seconds)
        return loads(url)
    finally:
        for process in [*steady, *([churned] if churned else [])]:
            process.terminate()
            process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "kenbun-scale"
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--every", type=float, default=60, help="seconds between kills")
    parser.add_argument("--full-refresh-seconds", type=float, default=600)
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=scale_results.HERE,
        help="where scale.json and RESULTS.md are written (default: benchmarks/)",
    )
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    url, server = database(args.data_dir, args.events)
    scratch = Path(tempfile.mkdtemp(prefix="kenbun-churn-", dir=args.data_dir))
    try:
        single = run(url, scratch, args, churn=False)
        churned = run(url, scratch, args, churn=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        server.stop()
    figures = {
        "minutes": args.minutes,
        "every": args.every,
        "full refresh seconds": args.full_refresh_seconds,
        "one replica": single,
        "churned": churned,
    }
    scale_results.record("churn", args.events, figures, args.output_dir)
    print(f"## Full loads in {args.minutes:g} minutes, {args.events:,} events\n")
    print("| deployment | full loads counted in PostgreSQL |\n|---|---|")
    print(f"| one replica | {single} |")
    print(
        f"| three replicas and a fourth killed and restarted every {args.every:g} s | {churned} |"
    )


if __name__ == "__main__":
    main()
