"""SIGTERM under load: the real ``serve`` process finishes what is in flight and exits 0."""

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
from pathlib import Path

import psutil

from kenbun_analytics.embedded import free_port
from tests.world import World


def _status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return int(response.status)


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
    port = free_port()
    log = (tmp_path / "serve.log").open("w")  # a file: a full pipe would stall the server
    process = subprocess.Popen(
        [sys.executable, "-m", "kenbun_analytics.cli", "serve", "--port", str(port)],
        env={"KENBUN_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None
            assert time.monotonic() < deadline, "not ready"
            try:
                if _status(base + "/readyz", {}) == 200:
                    break
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.2)
        children = psutil.Process(process.pid).children(recursive=True)

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
        log.close()
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
