"""Several processes serving one port (``serve --workers N``).

The supervisor binds the public socket once and starts N worker processes that
all accept on it (the kernel hands each connection to one of them), as
uvicorn's and gunicorn's supervisors do. Each worker is a whole service: its
own app, result cache and refresher election, all mapping the same snapshot
directory, so the snapshot is held once in the page cache however many workers
serve it; one worker refreshes, the others follow. Worker ``i`` runs its admin
listener on ``admin_port + i``, so each process's role, versions and metrics
can be read.

SIGINT or SIGTERM reaches the supervisor, which passes SIGTERM on: each worker
drains as a single ``serve`` does, and the supervisor returns once all have
exited. A worker that exits on its own is started again.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from kenbun_analytics.settings import Settings

logger = logging.getLogger(__name__)

Worker = Callable[[Settings, list[socket.socket]], None]
"""What a worker process runs: ``serve`` on the sockets given (module level, so
that a spawned process can import it)."""

RESTART_PAUSE_SECONDS = 1.0
"""Between a worker's exit and its replacement, so a worker that cannot start
does not spin."""
DRAIN_SECONDS = 40.0
"""How long the supervisor waits for a worker to drain before killing it: longer
than ``serve``'s own graceful shutdown."""


def bind(host: str, port: int) -> socket.socket:
    """The public listening socket, bound before any worker starts, so that a port
    in use stops the start at once (as uvicorn's own binding would)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        raise SystemExit(f"kenbun-analytics: cannot bind {host}:{port}: {error.strerror}") from None
    listening.listen(2048)
    listening.set_inheritable(True)
    return listening


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s settings: its own admin port, the rest shared."""
    admin_port = settings.admin_port + index if settings.admin_port else 0
    return replace(settings, admin_port=admin_port, workers=1)


def supervise(settings: Settings, public: socket.socket, worker: Worker) -> None:
    """Run ``settings.workers`` workers on ``public`` until SIGINT or SIGTERM."""
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start(index: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=worker,
            args=(worker_settings(settings, index), [public]),
            name=f"kenbun-worker-{index}",
        )
        process.start()
        logger.info("worker %d started (pid %s)", index, process.pid)
        return process

    def stop(signum: int, frame: FrameType | None) -> None:
        del frame
        logger.info("stopping %d workers (signal %d)", settings.workers, signum)
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    workers = {index: start(index) for index in range(settings.workers)}
    try:
        while not stopping.wait(0.2):
            for index, process in list(workers.items()):
                if not process.is_alive() and not stopping.is_set():
                    logger.warning(
                        "worker %d (pid %s) exited with %s; starting another",
                        index,
                        process.pid,
                        process.exitcode,
                    )
                    if stopping.wait(RESTART_PAUSE_SECONDS):
                        break
                    workers[index] = start(index)
    finally:
        for process in workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in workers.values():
            process.join(DRAIN_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
