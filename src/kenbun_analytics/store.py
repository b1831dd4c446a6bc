"""Immutable per-org-unit snapshots and their atomic swap, and the status of the
refreshes that bring them (which the web layer reports and the refresher writes).

A request takes one :class:`Snapshot` reference and computes everything from
it, so it always sees one whole snapshot. A refresh builds a new snapshot
beside the old one and swaps the reference in one assignment.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.errors import NotReady


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the endpoints need of one org unit, as of ``taken_at``."""

    org_unit_id: str
    taken_at: datetime
    version: int
    layout: Layout


_versions = itertools.count(1)


def next_version() -> int:
    """A process-wide increasing number; result caches key on it."""
    return next(_versions)


class SnapshotStore:
    """The current snapshot of every org unit."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def get(self, org_unit_id: str) -> Snapshot:
        snapshot = self._snapshots.get(org_unit_id)
        if snapshot is None:
            raise NotReady(org_unit_id)
        return snapshot

    def find(self, org_unit_id: str) -> Snapshot | None:
        return self._snapshots.get(org_unit_id)

    def put(self, snapshot: Snapshot) -> None:
        with self._lock:
            snapshots = dict(self._snapshots)
            snapshots[snapshot.org_unit_id] = snapshot
            self._snapshots = snapshots

    def confirm(self, org_unit_ids: set[str], taken_at: datetime) -> None:
        """A refresh found nothing changed in these org units: their snapshots are
        current as of ``taken_at``. Same data, same version, so cached answers stay."""
        with self._lock:
            snapshots = dict(self._snapshots)
            for unit in org_unit_ids & snapshots.keys():
                snapshots[unit] = replace(snapshots[unit], taken_at=taken_at)
            self._snapshots = snapshots

    def retain(self, org_unit_ids: set[str]) -> None:
        """Drop the snapshots of org units that no longer exist."""
        with self._lock:
            self._snapshots = {
                unit: snapshot for unit, snapshot in self._snapshots.items() if unit in org_unit_ids
            }

    def all(self) -> dict[str, Snapshot]:
        return self._snapshots


@dataclass
class RefreshStatus:
    """What ``/healthz`` and ``/readyz`` report."""

    org_unit_ids: list[str] | None = None
    """The org units of the last successful listing; None before the first."""
    errors: dict[str, str] = field(default_factory=dict)
    """The last refresh error of each org unit ("*" for the listing itself)."""
    last_success_at: datetime | None = None
    last_duration_seconds: float | None = None
    last_kind: str | None = None
    """``full`` or ``incremental``: what the last successful refresh did."""
    consecutive_failures: int = 0
    """Refreshes failed in a row; the retry delay doubles with each, up to the interval."""
    failures: dict[str, int] = field(default_factory=dict)
    """Failed refreshes per org unit since start ("*": the refresh as a whole)."""
    unit_seconds: dict[str, float] = field(default_factory=dict)
    """Duration of each org unit's last load or update."""
    ready_at: datetime | None = None
    """When every listed org unit first had a snapshot (see :meth:`loading`)."""
    published: frozenset[str] = frozenset()
    """A follower's: the listed org units that have a version in the snapshot
    directory (see :meth:`loading`)."""

    def loading(self, store: SnapshotStore) -> list[str]:
        """The listed org units that have no snapshot here and hold readiness back.

        A process becomes ready once every org unit of its listing has a snapshot
        (:meth:`settle`), and stays ready after that while an org unit created
        later has its first version loaded: its own requests answer 503 until
        then, and taking every process out of its load balancer at once for it
        would leave nothing to serve the others. A follower that fails to map a
        version the others serve (``published``) is still taken out.
        """
        listed = self.org_unit_ids
        if listed is None:
            return []
        missing = [unit for unit in listed if store.find(unit) is None]
        if self.ready_at is None:
            return missing
        return [unit for unit in missing if unit in self.published]

    def settle(self, store: SnapshotStore) -> None:
        """Mark the process ready for good once every listed org unit has a
        snapshot; called after a refresh or a follow, never by a probe."""
        if self.ready_at is None and self.org_unit_ids is not None and not self.loading(store):
            self.ready_at = datetime.now(UTC)


@dataclass
class StoreStatus:
    """What ``/healthz`` and ``/metrics`` report of a process that serves from a
    snapshot directory (``serve --snapshot-dir``); absent without one."""

    role: str = "follower"
    """``refresher`` while this process holds the refresher lock, else ``follower``."""
    election_error: str | None = None
    """Why the last attempt to take or keep the refresher lock failed (PostgreSQL
    unreachable); None when it was answered."""
    last_publish_at: datetime | None = None
    last_error: str | None = None
    """The last failure to publish, open or clean up; None since a success."""
    last_error_at: datetime | None = None
    refused: int = 0
    """Versions refused since start (a file not matching its manifest)."""
    publishes: int = 0
    """Versions this process published since start."""
    bytes_held: int = 0
    """Bytes of the directory's files, as of the last tick."""
