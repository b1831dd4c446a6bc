"""Refresh once, serve from many: one elected refresher publishes to the snapshot
directory, every other process follows it (``serve --snapshot-dir``).

Every process pointed at the same database and directory runs
:meth:`Deployment.tick` on the scheduler's tick. Each tick it asks
:class:`~kenbun_analytics.source.lock.Election` whether it holds the refresher lock, a PostgreSQL
session-level advisory lock held on a connection of its own:

* the holder refreshes (:class:`~kenbun_analytics.refresh.refresher.Refresher`)
  and publishes each new layout (:class:`Publishing`), then serves the published
  version as everyone else does;
* the others follow: they read each org unit's pointer and map the versions
  they do not hold yet (:meth:`Deployment.follow`). Polling the pointer costs
  one small file read per org unit and tick, works on any shared POSIX mount,
  and needs PostgreSQL for nothing, so followers keep following while the
  database is away.

The lock lives as long as its session: when the refresher dies, or its
connection is cut, PostgreSQL releases it, and the next follower to ask takes
it at its next tick. A holder checks its lock connection at every tick and, as
a fence, right before every publish; once the check fails it publishes nothing
more. So two processes never publish at once, except for a publish already
past its fence when the connection is cut (the window between one round trip
and a rename, which the tests probe).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.errors import CorruptVersion, PublishError
from kenbun_analytics.refresh.published import Pointer, PublishedStore
from kenbun_analytics.refresh.refresher import Refresher
from kenbun_analytics.source.lock import Election
from kenbun_analytics.store import RefreshStatus, Snapshot, SnapshotStore, StoreStatus

logger = logging.getLogger(__name__)


class Publishing:
    """The refresher's :class:`~kenbun_analytics.refresh.refresher.Publisher`: a
    publish behind the lock's fence, then the published version mapped to serve."""

    def __init__(
        self,
        published: PublishedStore,
        election: Election,
        status: StoreStatus,
        store: SnapshotStore,
    ) -> None:
        self._published = published
        self._election = election
        self._status = status
        self._store = store

    def _fence(self, unit: str) -> None:
        if not self._election.still_held():
            raise PublishError(unit, "this process no longer holds the refresher lock")

    def publish(
        self, unit: str, layout: Layout, *, taken_at: datetime, position: str, full: bool
    ) -> Snapshot:
        started = time.time()
        self._fence(unit)
        previous = self._published.newest(unit)
        full_at = taken_at if full or previous is None else previous.full_at
        try:
            pointer = self._published.publish(
                layout, org_unit_id=unit, taken_at=taken_at, position=position, full_at=full_at
            )
            mapped = self._published.open(pointer)
        except (OSError, CorruptVersion) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            self._store_failed(str(reason))
            raise PublishError(unit, str(reason)) from None
        self._status.last_publish_at = datetime.now(UTC)
        self._status.publishes += 1
        self._status.last_error = None
        logger.info(
            "published org unit %s version %d",
            unit,
            pointer.version,
            # From before the fence to after the pointer: two processes' spans never overlap.
            extra={"fields": {"publish_started": started, "publish_finished": time.time()}},
        )
        self._clean(unit)
        return Snapshot(unit, pointer.taken_at, pointer.version, mapped)

    def confirm(self, units: set[str], *, taken_at: datetime, position: str) -> None:
        for unit in sorted(units):
            self._fence(unit)
            pointer = self._published.newest(unit)
            if pointer is None:
                continue
            try:
                self._published.confirm(pointer, taken_at=taken_at, position=position)
            except OSError as error:
                self._store_failed(error.strerror or str(error))
                raise PublishError(unit, error.strerror or str(error)) from None

    def declare(self, units: list[str]) -> None:
        """Write the org units to the directory when they differ from what it
        holds (whoever wrote it), and sweep away those left out; a failure is
        reported and left to the next tick (the versions still publish)."""
        if not self._election.still_held():
            return
        try:
            if sorted(units) != self._published.declared():
                self._published.declare(units)
            for unit in self._published.sweep(units):
                logger.info("removed org unit %s from the snapshot directory", unit)
        except OSError as error:
            self._store_failed(error.strerror or str(error))

    def _clean(self, unit: str) -> None:
        try:
            self._published.remove(unit)
        except OSError as error:
            self._store_failed(error.strerror or str(error))

    def _store_failed(self, reason: str) -> None:
        self._status.last_error = reason
        self._status.last_error_at = datetime.now(UTC)


class Deployment:
    """One process's part in a deployment: refresher while it holds the lock,
    follower otherwise. The scheduler calls :meth:`tick`."""

    def __init__(
        self,
        published: PublishedStore,
        election: Election,
        refresher: Refresher,
        store: SnapshotStore,
        *,
        refresh_status: RefreshStatus,
        status: StoreStatus,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self._published = published
        self._election = election
        self._refresher = refresher
        self._store = store
        self._refresh_status = refresh_status
        self.status = status
        self._on_refused = on_refused
        self._refused: set[tuple[str, int]] = set()

    def tick(self) -> None:
        """Refresh when this process holds the lock, else follow the directory."""
        if self._election.hold():
            if self.status.role != "refresher":
                self.follow()  # serve the newest versions before patching them
                self._take_over()
            self._refresher.tick()
        else:
            if self.status.role == "refresher":
                logger.warning(
                    "this process lost the refresher lock (%s); following the snapshot directory",
                    self._election.error or "taken by another process",
                )
            self.status.role = "follower"
            self.follow()
        self.status.election_error = self._election.error
        try:
            self.status.bytes_held = self._published.bytes_held()
        except OSError:
            self.status.bytes_held = 0

    def _take_over(self) -> None:
        # An org unit left out was deleted: its last position says nothing of now.
        units, _ = self._declared_units()
        pointers = [p for unit in units if (p := self._newest(unit))]
        if pointers:
            # The oldest position and full load of any org unit: applying a change
            # twice leaves a layout as it was, missing one would not.
            position = min(pointers, key=lambda p: int(p.position)).position
            full_at = min(p.full_at for p in pointers)
            age = (datetime.now(UTC) - full_at).total_seconds()
            self._refresher.resume(position, max(0.0, age))
        else:
            self._refresher.resume(None, None)
        self.status.role = "refresher"
        self._refresh_status.published = frozenset()  # its own store is the reference now
        logger.info("this process holds the refresher lock and refreshes the snapshot directory")

    def _declared_units(self) -> tuple[list[str], list[str] | None]:
        """The published org units that the refresher declares, and its declared
        list (None before the first declaration: then every published one)."""
        units = self._published.units()
        declared = self._published.declared()
        if declared is None:
            return units, None
        kept = set(declared)
        return [unit for unit in units if unit in kept], declared

    def _newest(self, unit: str) -> Pointer | None:
        try:
            return self._published.newest(unit)
        except (OSError, ValueError) as error:
            self._failed(f"the pointer of org unit {unit} is unreadable: {error}")
            return None

    def follow(self) -> None:
        """Map the newest version of each org unit the refresher declared, where it
        is not the one held, and let go of any it no longer declares; a version
        that does not match its manifest is refused once and skipped."""
        units, declared = self._declared_units()
        if declared is not None and self.status.role == "follower":
            self._store.retain(set(declared))
        for unit in units:
            pointer = self._newest(unit)
            if pointer is None:
                continue
            held = self._store.find(unit)
            if held is not None and held.version == pointer.version:
                if held.taken_at != pointer.taken_at:
                    self._store.confirm({unit}, pointer.taken_at)
                continue
            if (unit, pointer.version) in self._refused:
                continue
            try:
                layout = self._published.open(pointer)
            except CorruptVersion as error:
                self._refused.add((unit, pointer.version))
                self.status.refused += 1
                if self._on_refused is not None:
                    self._on_refused()
                self._failed(str(error))
                logger.error("%s; serving the version held", error)  # noqa: TRY400 - one line
                continue
            self._store.put(Snapshot(unit, pointer.taken_at, pointer.version, layout))
        if self.status.role == "follower":
            # Ready once every declared org unit has a version, not on the first;
            # one declared later does not take a ready follower out of rotation.
            if declared is not None:
                self._refresh_status.org_unit_ids = declared
                self._refresh_status.published = frozenset(units)
                self._refresh_status.settle(self._store)
            elif units:
                # No declaration to read (an older refresher, a failed write): ready
                # on what is published, but not for good.
                self._refresh_status.org_unit_ids = units

    def _failed(self, reason: str) -> None:
        self.status.last_error = reason
        self.status.last_error_at = datetime.now(UTC)

    def close(self) -> None:
        self._election.close()
