"""The refresher lock: a PostgreSQL session-level advisory lock held on a connection
of its own, which elects the one process of a deployment that refreshes
(:mod:`kenbun_analytics.refresh.deployment`).

The lock lives exactly as long as its session: closed, cut
(``pg_terminate_backend``) or lost with its host, the session ends and
PostgreSQL releases the lock for the next process to take.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
from typing import Any

import adbc_driver_postgresql.dbapi as pg

from kenbun_analytics.errors import SourceError

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


class Election:
    """The refresher lock, on a connection of its own."""

    def __init__(self, url: str) -> None:
        self._url = _lock_url(url)
        self._connection: Any = None
        self._held = False
        self._lock = threading.Lock()
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
                    else:
                        cursor.execute(f"SELECT pg_try_advisory_lock({LOCK_KEY})")
                        self._held = bool(cursor.fetchone()[0])
                        return self._held
                    cursor.fetchone()
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

    def close(self) -> None:
        """Let the lock go (closing its session releases it)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._held = False
        if connection is not None:
            # A dead connection may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                connection.close()
