"""Refresh once, serve from many: replicas as separate ``serve`` processes on
their own ports, sharing one snapshot directory and one PostgreSQL.

One of them holds the refresher lock and publishes; the others map what it
published. Changes reach every replica within two refresh intervals with the
same bodies and ETags; a SIGKILLed refresher is replaced without a full load;
a corrupt version is refused while the version held keeps being served; a
refresher whose lock connection is cut stops publishing."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import psycopg
import pytest

from kenbun_analytics.local.embedded import free_port
from kenbun_analytics.local.seed import seed_world
from kenbun_analytics.refresh.published import POINTER
from kenbun_analytics.source.postgres import Source
from support.world import World

INTERVAL = 2.0
"""The replicas' refresh interval, seconds."""
SILENCE = 2.5
"""How long PostgreSQL lets the refresher's lock session stay silent at this
interval (the floor of ``kenbun_analytics.web.app.silence_seconds``)."""
EVENTS = int(os.environ.get("KENBUN_REPLICA_TEST_EVENTS", "100000"))
CAMPAIGNS = "/analytics/campaigns?group_by=campaign"


@dataclass
class Replica:
    """One ``serve`` process of the deployment."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log: Path
    log_file: IO[bytes] = field(repr=False)

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"http://127.0.0.1:{self.admin_port}/healthz", timeout=5)
        return dict(response.json())

    def role(self) -> str | None:
        try:
            return str(self.health()["store"]["role"])
        except (httpx.HTTPError, KeyError, TypeError):
            return None

    def versions(self) -> dict[str, int | None]:
        return {unit["org_unit_id"]: unit["version"] for unit in self.health()["org_units"]}

    def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=10)

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def published(self) -> list[tuple[str, int, float, float]]:
        """(org unit, version, started, finished) of every publish this process logged."""
        found = []
        for line in self.log.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            message = str(record.get("message", ""))
            if message.startswith("published org unit "):
                words = message.split()
                found.append(
                    (
                        words[3],
                        int(words[5]),
                        float(record["publish_started"]),
                        float(record["publish_finished"]),
                    )
                )
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def serve_command(
    database_url: str, port: int, admin_port: int, store: Path, *more: str
) -> list[str]:
    """``serve`` on its own ports, following ``store`` every :data:`INTERVAL` seconds."""
    return [
        sys.executable,
        "-m",
        "kenbun_analytics.cli",
        "serve",
        "--database-url",
        database_url,
        "--port",
        str(port),
        "--admin-port",
        str(admin_port),
        "--snapshot-dir",
        str(store),
        "--refresh-seconds",
        str(INTERVAL),
        *more,
    ]


def start_replica(name: str, database_url: str, store: Path, logs: Path) -> Replica:
    port, admin_port = free_port(), free_port()
    log = logs / f"{name}.log"
    log_file = log.open("wb")
    process = subprocess.Popen(
        serve_command(database_url, port, admin_port, store, "--full-refresh-seconds", "3600"),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "KENBUN_ACCESS_LOG": "off"},
    )
    return Replica(name, process, port, admin_port, log, log_file)


def until(condition: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"not within {timeout:g} s: {what}")


def admin_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (worker i's admin port is the first + i)."""
    while True:
        first = free_port()
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


def full_loads(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT org_unit_id::text, count(*) FROM kenbun_analytics_full_loads GROUP BY 1"
        ).fetchall()
    return {unit: int(count) for unit, count in rows}


@pytest.fixture
def deployment(
    database_url: str, tmp_path: Path
) -> Iterator[tuple[list[Replica], Path, list[str], dict[str, str]]]:
    """Three replicas, ready, over a seeded world; a reader of its first org unit."""
    source = Source(database_url)
    units = seed_world(source, events=EVENTS, seed=3, anchor=date(2026, 6, 30)).org_unit_ids
    source.close()
    with World.connect(database_url) as world:
        headers = world.reader(units[0])
    store = tmp_path / "store"
    logs = tmp_path / "logs"
    logs.mkdir()
    replicas = [start_replica(f"r{i}", database_url, store, logs) for i in range(3)]
    try:
        until(lambda: all(r.ready() for r in replicas), 120, "every replica ready")
        yield replicas, store, units, headers
    finally:
        for replica in replicas:
            replica.stop()


def answers(replicas: list[Replica], headers: dict[str, str]) -> list[tuple[int, str, bytes]]:
    found = []
    for replica in replicas:
        response = replica.get(CAMPAIGNS, headers)
        found.append((response.status_code, response.headers.get("etag", ""), response.content))
    return found


def everywhere(replicas: list[Replica], headers: dict[str, str], campaign: str) -> bool:
    """Every replica answers with ``campaign``, with the same body, ETag and X-Snapshot-At."""
    seen = set()
    for replica in replicas:
        response = replica.get(CAMPAIGNS, headers)
        if response.status_code != 200 or campaign.encode() not in response.content:
            return False
        seen.add((response.headers["etag"], response.headers["x-snapshot-at"], response.content))
    return len(seen) == 1


def assert_one_publisher_at_a_time(replicas: list[Replica]) -> None:
    """No version published twice, and no two processes' publishes overlapping in
    time (each span runs from before the lock's fence to after the pointer)."""
    spans = sorted(
        (started, finished, replica.name, (unit, version))
        for replica in replicas
        for unit, version, started, finished in replica.published()
    )
    versions = [span[3] for span in spans]
    assert len(versions) == len(set(versions)), "a version was published twice"
    for (_, finished, name, _), (started, _, other, _) in itertools.pairwise(spans):
        assert name == other or finished <= started, f"{name} and {other} published at once"


def add_event(database_url: str, unit: str, campaign: str) -> None:
    with World.connect(database_url) as world:
        world.event(unit, campaign=campaign, source="replicas", occurred_at="2026-06-29T12:00:00")


def reaches_everyone(
    database_url: str, replicas: list[Replica], headers: dict[str, str], unit: str, campaign: str
) -> None:
    """An event of ``campaign``: every replica answers it within three intervals,
    and exactly one process holds the refresher lock."""
    add_event(database_url, unit, campaign)
    until(
        lambda: everywhere(replicas, headers, campaign),
        3 * INTERVAL,
        f"the change {campaign!r} on every replica",
    )
    roles = [r.role() for r in replicas]
    assert roles.count("refresher") == 1, roles


def test_three_replicas_serve_one_published_snapshot_and_survive_the_refresher(
    deployment: tuple[list[Replica], Path, list[str], dict[str, str]], database_url: str
) -> None:
    """Changes reach every replica within two intervals, identically; the refresher
    SIGKILLed, another takes over and publishes without a full load; a change
    after that reaches every survivor; one full load per org unit in all."""
    replicas, _, units, headers = deployment
    roles = [r.role() for r in replicas]
    assert sorted(roles, key=str) == ["follower", "follower", "refresher"], roles
    first = answers(replicas, headers)
    assert len({(etag, body) for _, etag, body in first}) == 1
    assert first[0][0] == 200

    add_event(database_url, units[0], "first-change")
    seconds = until(
        lambda: everywhere(replicas, headers, "first-change"),
        2 * INTERVAL,
        "the first change on every replica",
    )
    print(f"first change everywhere after {seconds:.2f} s")

    refresher = next(r for r in replicas if r.role() == "refresher")
    survivors = [r for r in replicas if r is not refresher]
    before = {r.name: r.versions() for r in survivors}
    refresher.process.send_signal(signal.SIGKILL)
    refresher.process.wait()
    killed_at = time.monotonic()
    until(
        lambda: any(r.role() == "refresher" for r in survivors),
        2 * INTERVAL,
        "a survivor holds the refresher lock",
    )
    add_event(database_url, units[0], "after-takeover")
    until(
        lambda: everywhere(survivors, headers, "after-takeover"),
        3 * INTERVAL,
        "the change after the takeover on every survivor",
    )
    print(f"takeover and publish after {time.monotonic() - killed_at:.2f} s")
    after = {r.name: r.versions() for r in survivors}
    for name, versions in after.items():
        assert versions[units[0]] > before[name][units[0]]  # type: ignore[operator]
    # One full load per org unit for the whole deployment, the takeover included.
    assert full_loads(database_url) == dict.fromkeys(units, 1)
    assert_one_publisher_at_a_time(replicas)


def test_a_corrupt_version_is_refused_and_the_held_version_served(
    deployment: tuple[list[Replica], Path, list[str], dict[str, str]],
) -> None:
    """A version whose file does not match its manifest: each follower refuses it
    with one log line and a metric, and keeps answering from the version it holds."""
    replicas, store, units, headers = deployment
    followers = [r for r in replicas if r.role() == "follower"]
    unit = units[0]
    before = answers(followers, headers)
    pointer = json.loads((store / unit / POINTER).read_text())
    newest = store / unit / f"v{pointer['version']:020d}"
    corrupt = store / unit / f"v{pointer['version'] + 1000:020d}"
    shutil.copytree(newest, corrupt)
    events = corrupt / "events.arrow"
    data = bytearray(events.read_bytes())
    data[len(data) // 2] ^= 0xFF
    events.write_bytes(bytes(data))
    pointer["version"] += 1000
    (store / unit / "corrupt.json").write_text(json.dumps(pointer))
    (store / unit / "corrupt.json").rename(store / unit / POINTER)
    until(
        lambda: all(f.metric("kenbun_store_refused_versions_total") == 1 for f in followers),
        2 * INTERVAL,
        "every follower refused the corrupt version",
    )
    assert answers(followers, headers) == before
    for follower in followers:
        refusals = [line for line in follower.log.read_text().splitlines() if "refused" in line]
        assert len(refusals) == 1, refusals
        assert follower.health()["store"]["refused_versions"] == 1


def test_a_refresher_whose_lock_connection_is_cut_stops_publishing(
    deployment: tuple[list[Replica], Path, list[str], dict[str, str]], database_url: str
) -> None:
    """pg_terminate_backend on the refresher's lock connection: it stops publishing,
    one process holds the lock again, and no version is ever published twice."""
    replicas, _, units, headers = deployment
    for round_ in range(3):
        with psycopg.connect(database_url, autocommit=True) as connection:
            cut = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'kenbun-analytics-lock' AND datname = current_database() "
                "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
            ).fetchall()
        assert cut == [(True,)]
        reaches_everyone(database_url, replicas, headers, units[0], f"after-cut-{round_}")
    assert_one_publisher_at_a_time(replicas)
    assert full_loads(database_url) == dict.fromkeys(units, 1)


def test_a_frozen_refresher_loses_the_lock_and_comes_back_a_follower(
    deployment: tuple[list[Replica], Path, list[str], dict[str, str]], database_url: str
) -> None:
    """SIGSTOP, as a host cut off or a paused VM: nothing closes its connection, yet
    PostgreSQL ends its silent session, a survivor takes over and publishes the next
    change; SIGCONT, it finds the lock gone and follows."""
    replicas, _, units, headers = deployment
    refresher = next(r for r in replicas if r.role() == "refresher")
    survivors = [r for r in replicas if r is not refresher]
    refresher.process.send_signal(signal.SIGSTOP)
    try:
        seconds = until(
            lambda: any(r.role() == "refresher" for r in survivors),
            SILENCE + 2 * INTERVAL,
            "a survivor holds the refresher lock",
        )
        print(f"lock taken from the frozen refresher after {seconds:.2f} s")
        add_event(database_url, units[0], "while-frozen")
        until(
            lambda: everywhere(survivors, headers, "while-frozen"),
            3 * INTERVAL,
            "the change made while the refresher was frozen on every survivor",
        )
    finally:
        refresher.process.send_signal(signal.SIGCONT)
    until(lambda: refresher.role() == "follower", 3 * INTERVAL, "the thawed process follows")
    reaches_everyone(database_url, replicas, headers, units[0], "after-thaw")
    assert_one_publisher_at_a_time(replicas)
    assert full_loads(database_url) == dict.fromkeys(units, 1)


def test_a_follower_on_an_empty_store_without_postgresql_is_not_ready(tmp_path: Path) -> None:
    """Nothing published and PostgreSQL unreachable: /readyz is 503 and says why."""
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/kenbun"
    logs = tmp_path / "logs"
    logs.mkdir()
    replica = start_replica("alone", unreachable, tmp_path / "store", logs)
    try:

        def answer() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{replica.port}/readyz", timeout=5)
            except httpx.HTTPError:
                return None

        until(
            lambda: (found := answer()) is not None and b"cannot reach PostgreSQL" in found.content,
            30,
            "/readyz saying why",
        )
        response = answer()
        assert response is not None
        assert response.status_code == 503
        assert response.json()["detail"] == (
            "not ready: no snapshot is published in the snapshot directory yet, "
            "and this process cannot reach PostgreSQL to take over refreshing"
        )
        assert replica.role() == "follower"
        assert replica.health()["store"]["election_error"]
    finally:
        replica.stop()


def test_workers_serve_one_port_from_one_published_snapshot(
    database_url: str, tmp_path: Path
) -> None:
    """serve --workers 2: two processes on one port, one refresher and one follower,
    the same answers from either; a worker killed is replaced; SIGTERM stops both,
    leaving no process behind."""
    source = Source(database_url)
    units = seed_world(source, events=20_000, seed=3, anchor=date(2026, 6, 30)).org_unit_ids
    source.close()
    with World.connect(database_url) as world:
        headers = world.reader(units[0])
    port, admin_port = free_port(), admin_ports(2)
    log = tmp_path / "workers.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            serve_command(database_url, port, admin_port, tmp_path / "store", "--workers", "2"),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KENBUN_ACCESS_LOG": "off"},
        )
        try:
            workers = [
                Replica(f"w{i}", process, port, admin_port + i, log, log_file) for i in range(2)
            ]
            until(lambda: all(w.ready() and w.role() for w in workers), 120, "both workers ready")
            assert sorted(str(w.role()) for w in workers) == ["follower", "refresher"]
            until(
                lambda: len({str(w.versions()) for w in workers}) == 1,
                2 * INTERVAL,
                "both workers serve the same versions",
            )
            seen = set()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
                for _ in range(40):
                    # A new connection each time, so that both workers answer.
                    response = client.get(CAMPAIGNS, headers={"Connection": "close"})
                    assert response.status_code == 200
                    seen.add((response.headers["etag"], response.content))
            assert len(seen) == 1
            # A worker killed is started again, on the same admin port.
            worker_pids = {
                child.pid
                for child in psutil.Process(process.pid).children()
                if "resource_tracker" not in " ".join(child.cmdline())
            }
            victim = min(worker_pids)
            os.kill(victim, signal.SIGKILL)
            until(
                lambda: (
                    all(w.ready() and w.role() for w in workers)
                    and victim not in {c.pid for c in psutil.Process(process.pid).children()}
                ),
                60,
                "the killed worker replaced",
            )
            children = psutil.Process(process.pid).children(recursive=True)
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
            psutil.wait_procs(children, timeout=10)
            assert not [child for child in children if child.is_running()]
        finally:
            if process.poll() is None:
                process.kill()


def test_workers_need_a_snapshot_directory() -> None:
    """--workers 2 without --snapshot-dir: a clear error, nothing served."""
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "kenbun_analytics.cli",
            "serve",
            "--database-url",
            "postgresql://nowhere/kenbun",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "KENBUN_SNAPSHOT_DIR"},
        check=False,
    )
    assert finished.returncode != 0
    assert "--workers above 1 needs --snapshot-dir" in finished.stderr
