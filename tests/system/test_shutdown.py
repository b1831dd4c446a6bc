"""The real ``serve`` process: its admin listener beside the API, and SIGTERM under
load, which finishes what is in flight and exits 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import psutil

import kenbun_analytics
from kenbun_analytics.local.embedded import free_port
from support.world import World

SRC = str(Path(kenbun_analytics.__file__).parents[1])
"""Where the package under test lives: the child process runs the same code."""


def _status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return int(response.status)


def _fetch(url: str) -> tuple[int, Message, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _listening(pid: int) -> set[tuple[str, int]]:
    """The addresses the process accepts connections on."""
    return {
        (connection.laddr.ip, connection.laddr.port)
        for connection in psutil.Process(pid).net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }


def _serve(
    database_url: str, log: Path, *arguments: str, port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = port or free_port()
    with log.open("w") as output:  # a file: a full pipe would stall the server
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kenbun_analytics.cli",
                "serve",
                "--port",
                str(port),
                *arguments,
            ],
            env={"KENBUN_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "PYTHONPATH": SRC},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return process, port


def _wait_ready(process: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None
        assert time.monotonic() < deadline, "not ready"
        try:
            if _status(base + "/readyz", {}) == 200:
                return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.2)


def _slow_post(port: int, headers: dict[str, str], body: bytes) -> socket.socket:
    """A request whose headers are sent and whose body is not: in flight at the server."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = [
        "POST /org-units/active HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    connection.sendall("\r\n".join(head).encode() + body[:5])
    return connection


def test_sigterm_under_load_finishes_in_flight_requests(
    world: World, database_url: str, tmp_path: Path
) -> None:
    unit = world.org_unit("Acme")
    lead = world.lead(unit, level="Hot")
    for day in range(1, 29):
        world.event(unit, lead=lead, campaign=f"c{day}", occurred_at=f"2026-02-{day:02d}T10:00:00")
    headers = world.reader(unit)
    admin_port = free_port()
    process, port = _serve(database_url, tmp_path / "serve.log", "--admin-port", str(admin_port))
    base = f"http://127.0.0.1:{port}"
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        _wait_ready(process, base)
        children = psutil.Process(process.pid).children(recursive=True)

        # The admin listener, on loopback by default: the details the API no longer has.
        assert _listening(process.pid) == {("127.0.0.1", port), ("127.0.0.1", admin_port)}
        status, metric_headers, metrics = _fetch(admin + "/metrics")
        assert status == 200
        assert metric_headers.get_all("Content-Type") == [
            "text/plain; version=0.0.4; charset=utf-8"
        ]
        assert f'kenbun_snapshot_rows{{org_unit="{unit}"}} 28.0'.encode() in metrics
        status, _, health = _fetch(admin + "/healthz")
        assert status == 200
        assert json.loads(health)["org_units"][0]["org_unit_id"] == unit
        assert _fetch(base + "/metrics")[0] == 404
        assert json.loads(_fetch(base + "/healthz")[2]) == {"status": "ok"}

        # Load: uncached and cached aggregates from eight threads until the server goes away.
        outcomes: list[str] = []
        stop = threading.Event()

        def load(worker: int) -> None:
            day = 0
            while not stop.is_set():
                day = day % 28 + 1
                start = f"2026-02-{day:02d}" if worker % 2 else "2026-02-01"
                try:
                    code = _status(f"{base}/analytics/campaigns?start_date={start}", headers)
                    outcomes.append(str(code))
                except urllib.error.HTTPError as error:
                    outcomes.append(str(error.code))
                except OSError:
                    outcomes.append("refused")  # after the listener closed
                    time.sleep(0.01)

        workers = [threading.Thread(target=load, args=(i,)) for i in range(8)]
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        body = json.dumps({"org_unit_id": unit}).encode()
        in_flight = [_slow_post(port, headers, body) for _ in range(4)]
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert process.poll() is None, "it must wait for the requests in flight"
        assert _fetch(admin + "/healthz")[0] == 200  # still answering while the API drains
        answers = []
        for connection in in_flight:
            connection.sendall(body[5:])
            answers.append(connection.recv(4096))
            connection.close()
        process.wait(timeout=40)
        stop.set()
        for worker in workers:
            worker.join()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = (tmp_path / "serve.log").read_text()
    assert process.returncode == 0, output
    assert all(answer.startswith(b"HTTP/1.1 204") for answer in answers), answers
    served = [o for o in outcomes if o != "refused"]
    assert len(served) > 50
    assert set(served) == {"200"}, set(served)
    # Its helpers (the loads' fork server) exit on seeing it gone.
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, alive
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines
    assert all(json.loads(line) for line in lines), output  # every log line is one JSON object


def test_serve_without_an_admin_listener(world: World, database_url: str, tmp_path: Path) -> None:
    """--admin-port 0 turns the admin listener off: the API's port is the only one."""
    world.event(world.org_unit("Acme"), campaign="spring")
    process, port = _serve(database_url, tmp_path / "serve.log", "--admin-port", "0")
    try:
        _wait_ready(process, f"http://127.0.0.1:{port}")
        assert _listening(process.pid) == {("127.0.0.1", port)}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_admin_port_in_use_stops_serve_before_it_starts(
    database_url: str, tmp_path: Path
) -> None:
    """The admin socket is bound first: a port in use is a JSON error line naming the
    listener, and uvicorn's start-up failure status (3), with nothing started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin_port = taken.getsockname()[1]
        process, _ = _serve(database_url, tmp_path / "serve.log", "--admin-port", str(admin_port))
        assert process.wait(timeout=30) == 3
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    errors = [line["message"] for line in lines if line["level"] == "error"]
    assert errors == [
        "[Errno 98] Address already in use",
        f"the admin listener cannot bind 127.0.0.1:{admin_port}: set --admin-host and "
        "--admin-port (KENBUN_ADMIN_HOST, KENBUN_ADMIN_PORT; port 0 turns it off)",
    ]
