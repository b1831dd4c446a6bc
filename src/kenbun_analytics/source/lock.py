"""The refresher lock: a PostgreSQL session-level advisory lock held on a connection
of its own, which elects the one process of a deployment that refreshes
(:mod:`kenbun_analytics.refresh.deployment`).

The lock lives exactly as long as its session: closed, cut
(``pg_terminate_backend``) or lost with its host, the session ends and
PostgreSQL releases the lock for the next process to take.

A holder that stops without closing anything (its host powered off or cut
from the network, the process frozen by SIGSTOP or a paused VM) would keep the
session, and so the lock, for as long as PostgreSQL does not notice, which
with the operating system's TCP defaults is hours. So the holder's session
tells PostgreSQL to end it after ``silence_seconds`` without a statement
(``idle_session_timeout``) and to probe its peer within seconds (the server's
TCP keepalives), and a heartbeat thread sends a round trip four times per
``silence_seconds`` while the lock is held, whatever the refresh is doing.
Once the holder falls silent, PostgreSQL ends its session and the next
follower's tick takes the lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import urllib.parse
from typing import Any

import adbc_driver_postgresql.dbapi as pg

from kenbun_analytics.errors import SourceError

logger = logging.getLogger(__name__)

LOCK_KEY = 7_233_174_017_011_226_739
"""The refresher lock's advisory-lock key (any fixed bigint; advisory locks are per database)."""


def _lock_url(url: str) -> str:
    """``url`` with a connect timeout and TCP keepalives, so that a host gone
    silent ends the lock's session (and the lock) rather than hanging a check."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    extra = {
        "connect_timeout": "5",
        "keepalives": "1",
        "keepalives_idle": "5",
        "keepalives_interval": "2",
        "keepalives_count": "3",
        "tcp_user_timeout": "10000",
        "application_name": "kenbun-analytics-lock",
    }
    added = "&".join(f"{name}={value}" for name, value in extra.items() if name not in query)
    return urllib.parse.urlunsplit(parts._replace(query=f"{parts.query}&{added}".lstrip("&")))


_SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
"""The server's side of the holder's connection probes a silent peer after 5 s."""


class Election:
    """The refresher lock, on a connection of its own."""

    def __init__(self, url: str, *, silence_seconds: float = 10.0) -> None:
        self._url = _lock_url(url)
        self._silence_seconds = silence_seconds
        self._connection: Any = None
        self._held = False
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._closed = threading.Event()
        self.error: str | None = None
        """Why the last check could not ask PostgreSQL; None when it could."""

    def hold(self) -> bool:
        """Whether this process holds the lock now: taken if free, and, when held,
        confirmed by a round trip on its connection (a dead connection has lost it)."""
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = pg.connect(self._url, autocommit=True)
                with self._connection.cursor() as cursor:
                    if self._held:
                        cursor.execute("SELECT 1")
                        cursor.fetchone()
                    else:
                        cursor.execute(f"SELECT pg_try_advisory_lock({LOCK_KEY})")
                        self._held = bool(cursor.fetchone()[0])
                        if self._held:
                            self._bound_silence(cursor)
            except Exception as error:  # any failure of the session loses the lock
                self._drop()
                self.error = str(SourceError("refresher election", error))
                return False
            self.error = None
            return self._held

    def still_held(self) -> bool:
        """Whether the lock taken at this tick is still held: a round trip on its
        connection, never an attempt to take it (a refresh that started under a
        lock since lost must not go on under one taken again)."""
        with self._lock:
            if not self._held:
                return False
        return self.hold()

    def _bound_silence(self, cursor: Any) -> None:
        """Have PostgreSQL end the holder's session once it falls silent, and keep
        it from falling silent while this process runs (see the module's docstring)."""
        settings = {
            **_SERVER_KEEPALIVES,
            "idle_session_timeout": str(max(1, round(self._silence_seconds * 1000))),
        }
        for name, value in settings.items():
            try:
                cursor.execute(f"SET {name} = {value}")
            except Exception as error:  # an older server lacks one: keep the others
                logger.warning(
                    "the refresher lock's session cannot set %s (%s)",
                    name,
                    SourceError("refresher election", error),
                )
        if self._heartbeat is None or not self._heartbeat.is_alive():
            self._heartbeat = threading.Thread(
                target=self._beat, name="kenbun-lock-heartbeat", daemon=True
            )
            self._heartbeat.start()

    def _beat(self) -> None:
        """While the lock is held: a round trip every quarter of ``silence_seconds``.
        A failed one loses the lock, as a failed check at a tick does."""
        while not self._closed.wait(self._silence_seconds / 4):
            if not self.still_held():
                return

    def close(self) -> None:
        """Let the lock go (closing its session releases it)."""
        self._closed.set()
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._held = False
        if connection is not None:
            # A dead connection may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                connection.close()
