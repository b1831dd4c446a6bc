"""The refresh job and its timing.

:class:`Refresher` knows how to bring the snapshots up to date; APScheduler
only decides when. A full refresh reloads every org unit; the ones in between
read the change log and refetch only the events that changed, and reload the
small per-lead and per-account facts only of org units whose leads, aliases,
accounts or deals changed. Whole loads run in a child process when the service
asks for it (:mod:`kenbun_analytics.refresh.child`); incremental ones patch the layout here.

With a :class:`Publisher` (``serve --snapshot-dir``), every new layout is
published, and the refresher serves the published version as every other
process does; a refresher that takes over resumes from the published versions
(:meth:`Refresher.resume`) rather than loading everything again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Protocol

import polars as pl

from kenbun_analytics.engine.encode import arrow_frame, missing_leads, raw_events_frame
from kenbun_analytics.engine.frames import ACCOUNT_DEALS, LEAD_FACTS
from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.engine.patch import update
from kenbun_analytics.errors import LoadError, PublishError, SourceError
from kenbun_analytics.refresh.child import ChildLoads
from kenbun_analytics.refresh.full import load_unit
from kenbun_analytics.source.postgres import Changes, Source
from kenbun_analytics.source.priority import lower_thread
from kenbun_analytics.store import RefreshStatus, Snapshot, SnapshotStore, next_version

logger = logging.getLogger(__name__)

CHANGE_LOG_RETENTION_SECONDS = 24 * 3600


class Publisher(Protocol):
    """Where the layouts of a refresher that publishes go
    (:class:`kenbun_analytics.refresh.deployment.Publishing`)."""

    def publish(
        self, unit: str, layout: Layout, *, taken_at: datetime, position: str, full: bool
    ) -> Snapshot:
        """Publish ``layout`` as the org unit's next version; the snapshot to serve
        (the published version itself). :class:`PublishError` when it cannot."""

    def confirm(self, units: set[str], *, taken_at: datetime, position: str) -> None:
        """Nothing changed in ``units``: their versions are current as of ``taken_at``."""

    def declare(self, units: list[str]) -> None:
        """``units`` are the org units served from now on (before any is loaded)."""


class Refresher:
    """Brings ``store`` up to date with ``source``. Two refreshes never overlap."""

    def __init__(
        self,
        source: Source,
        store: SnapshotStore,
        *,
        full_refresh_seconds: float,
        refresh_seconds: float = 30.0,
        migrate: bool = False,
        load_parts: int = 1,
        isolated_loads: bool = False,
        on_refresh: Callable[[str, float], None] | None = None,
        status: RefreshStatus | None = None,
        clock: Callable[[], float] = time.monotonic,
        publisher: Publisher | None = None,
    ) -> None:
        self._source = source
        self._store = store
        self._full_refresh_seconds = full_refresh_seconds
        self._refresh_seconds = refresh_seconds
        self._migrate_pending = migrate
        self._load_parts = max(1, load_parts)
        self._isolated_loads = isolated_loads
        # For loads in this process, long-lived readers: threads made per refresh
        # would each get a fresh malloc arena, and the process would keep growing
        # by them. They decode what PostgreSQL sends at a lower priority than the
        # requests.
        self._readers = ThreadPoolExecutor(
            max_workers=self._load_parts + 1,
            thread_name_prefix="kenbun-read",
            initializer=lower_thread,
        )
        self._on_refresh = on_refresh
        self._clock = clock
        self._publisher = publisher
        self._running = threading.Lock()
        self._xmin: str | None = None
        self._last_full: float | None = None
        self._next_attempt = float("-inf")
        self.status = status if status is not None else RefreshStatus()

    def close(self) -> None:
        """Stop the reader threads (after the scheduler has stopped calling)."""
        self._readers.shutdown(wait=True)

    def retry_delay(self, consecutive_failures: int) -> float:
        """Seconds before the next attempt: the interval after a success; after
        failures 0.5 s doubling with each one, never longer than the interval."""
        if consecutive_failures == 0:
            return self._refresh_seconds
        backoff: float = 0.5 * 2.0 ** min(consecutive_failures - 1, 20)
        return min(self._refresh_seconds, backoff)

    def tick(self) -> None:
        """The scheduler's call, every second or so: refresh when one is due."""
        if self._clock() >= self._next_attempt:
            self.refresh()

    def request_full(self) -> None:
        """Make the next refresh a full one."""
        self._last_full = None

    def resume(self, position: str | None, full_age_seconds: float | None) -> None:
        """Continue where a previous refresher left off: the snapshots in the store
        are consistent with the change-log ``position``, and their full load was
        taken ``full_age_seconds`` ago. None: load everything at the next refresh."""
        with self._running:
            if position is None or full_age_seconds is None:
                self._xmin = None
                self._last_full = None
            else:
                self._xmin = position
                self._last_full = self._clock() - full_age_seconds
            self._next_attempt = float("-inf")

    def refresh(self, *, wait: bool = False) -> bool:
        """Run one refresh; True when it succeeded.

        The scheduler passes ``wait=False``: a tick that finds a refresh running
        skips. Callers that need the data current now pass ``wait=True``.
        """
        if not self._running.acquire(blocking=wait):
            return False
        started = self._clock()
        ok = False
        try:
            self._refresh()
        except SourceError as error:
            self._failed("*", str(error))
            logger.warning("snapshot refresh failed, serving the last good snapshots: %s", error)
        except Exception as error:  # a bug must not stop later ticks or crash the process
            self._failed("*", f"unexpected {type(error).__name__}")
            logger.error(  # noqa: TRY400 - one line, no traceback in the logs
                "snapshot refresh failed unexpectedly (%s); serving the last good snapshots",
                type(error).__name__,
            )
        else:
            self.status.errors.pop("*", None)
            self.status.last_success_at = datetime.now(UTC)
            ok = not self.status.errors
        finally:
            finished = self._clock()
            self.status.last_duration_seconds = finished - started
            status = self.status
            status.consecutive_failures = 0 if ok else status.consecutive_failures + 1
            delay = self.retry_delay(status.consecutive_failures)
            self._next_attempt = (started if ok else finished) + delay
            if self._on_refresh is not None:
                outcome = (status.last_kind or "full") if ok else "failed"
                self._on_refresh(outcome, finished - started)
            self._running.release()
        return ok

    def _failed(self, unit: str, error: str) -> None:
        self.status.errors[unit] = error
        self.status.failures[unit] = self.status.failures.get(unit, 0) + 1

    def _refresh(self) -> None:
        if self._migrate_pending:
            applied = self._source.migrate()
            self._migrate_pending = False
            if applied:
                logger.info("applied migrations: %s", ", ".join(applied))
        taken_at = datetime.now(UTC)
        xmin = self._source.snapshot_xmin()
        units = self._source.org_unit_ids()
        self._store.retain(set(units))
        self.status.errors = {u: e for u, e in self.status.errors.items() if u in units}
        self.status.org_unit_ids = units
        if self._publisher is not None:
            self._publisher.declare(units)
        now = self._clock()
        previous_xmin = self._xmin
        full = self._last_full is None or now - self._last_full >= self._full_refresh_seconds
        if full or previous_xmin is None:
            failed = self._load_whole(units, taken_at, xmin)
            if not failed:
                self._last_full = now
                self._source.prune_changes(CHANGE_LOG_RETENTION_SECONDS)
        else:
            changes = self._source.changes_since(previous_xmin)
            failed = self._apply_changes(units, changes, taken_at, xmin)
        if not failed:
            self._xmin = xmin
            self.status.last_kind = "full" if full else "incremental"
        self.status.settle(self._store)

    def _keep(
        self, unit: str, layout: Layout, taken_at: datetime, position: str, *, full: bool
    ) -> bool:
        """Serve ``layout`` from now on (published first, with a publisher); False
        when publishing failed, and the org unit keeps the version it has."""
        if self._publisher is None:
            self._store.put(Snapshot(unit, taken_at, next_version(), layout))
            return True
        try:
            snapshot = self._publisher.publish(
                unit, layout, taken_at=taken_at, position=position, full=full
            )
        except PublishError as error:
            self._failed(unit, str(error))
            logger.warning("%s; serving the version published before", error)
            return False
        self._store.put(snapshot)
        return True

    def _load_whole(self, units: list[str], taken_at: datetime, position: str) -> bool:
        failed = False
        with self._loads() as load:
            for index, unit in enumerate(units):
                started = self._clock()
                try:
                    layout = load(unit, units[index + 1 :])
                except (SourceError, LoadError) as error:
                    # Whatever broke the load (a restarted server) has likely broken
                    # our idle connections too, as a failed read here would have.
                    self._source.close()
                    failed = True
                    self._failed(unit, str(error))
                    logger.warning("refresh of org unit %s failed: %s", unit, error)
                    continue
                if self._publisher is not None:
                    # Counted in PostgreSQL, so a deployment's full loads are counted
                    # whichever process ran them.
                    self._source.count_full_load(unit)
                if not self._keep(unit, layout, taken_at, position, full=True):
                    failed = True
                    continue
                self.status.errors.pop(unit, None)
                self.status.unit_seconds[unit] = self._clock() - started
        return failed

    @contextlib.contextmanager
    def _loads(self) -> Iterator[Callable[[str, Sequence[str]], Layout]]:
        """How this refresh loads an org unit whole, given those it loads after it:
        in a child process (:class:`~kenbun_analytics.refresh.child.ChildLoads`), which reads
        and builds the next without waiting, or here on the reader threads."""
        if self._isolated_loads:
            mapped = self._publisher is not None
            with ChildLoads(self._source.options, self._load_parts, mapped=mapped) as child:
                yield child.load
        else:
            yield lambda unit, _: load_unit(self._source, unit, self._load_parts, self._readers)

    def _apply_changes(
        self, units: list[str], changes: Changes, taken_at: datetime, position: str
    ) -> bool:
        unit_set = set(units)
        whole = {u for u in units if self._store.find(u) is None} | set(changes.whole_units)
        if changes.everything:
            whole = set(units)
        whole &= unit_set
        partial = (set(changes.dimension_units) | set(changes.event_units)) & unit_set - whole
        unchanged = unit_set - whole - partial
        self._store.confirm(unchanged, taken_at)
        if self._publisher is not None:
            try:
                self._publisher.confirm(unchanged, taken_at=taken_at, position=position)
            except PublishError as error:
                self._failed("store", str(error))
                logger.warning("%s", error)
                return True
        failed = self._load_whole(sorted(whole), taken_at, position)
        if not partial:
            return failed
        changed_ids = pl.Series("event_id", changes.event_ids, dtype=pl.Int64)
        current = raw_events_frame(
            self._source.events_by_id(changes.event_ids) if changes.event_ids else None,
            with_org_unit=True,
        )
        for unit in sorted(partial):
            started = self._clock()
            layout = self._store.get(unit).layout
            arrived = self._events_of_unit(current, unit)
            try:
                facts, new_leads = self._facts_of(unit, layout, arrived, changes)
            except SourceError as error:
                failed = True
                self._failed(unit, str(error))
                logger.warning("refresh of org unit %s failed: %s", unit, error)
                continue
            layout = update(
                layout,
                changed_ids if unit in changes.event_units else changed_ids.clear(),
                arrived,
                facts,
                new_leads,
            )
            if not self._keep(unit, layout, taken_at, position, full=False):
                failed = True
                continue
            self.status.errors.pop(unit, None)
            self.status.unit_seconds[unit] = self._clock() - started
        return failed

    def _facts_of(
        self, unit: str, layout: Layout, arrived: pl.DataFrame, changes: Changes
    ) -> tuple[tuple[pl.DataFrame, pl.DataFrame] | None, pl.DataFrame | None]:
        """For :func:`update`: the org unit's facts again when its leads, aliases,
        accounts or deals changed; else only those of leads its events name for
        the first time (of other org units: its own were all read already)."""
        keys = arrived.get_column("lead_key")
        if unit not in changes.dimension_units:
            known = layout.dictionaries.lead_key
            return None, missing_leads(keys, known, self._source.leads_by_id)
        lead_facts = arrow_frame(self._source.leads_of(unit), LEAD_FACTS)
        keys = pl.concat([layout.dictionaries.lead_key, keys])
        lead_facts = pl.concat(
            [
                lead_facts,
                missing_leads(keys, lead_facts.get_column("lead_key"), self._source.leads_by_id),
            ]
        )
        return (
            lead_facts,
            arrow_frame(self._source.account_deals_of(unit), ACCOUNT_DEALS),
        ), None

    @staticmethod
    def _events_of_unit(current: pl.DataFrame, unit: str) -> pl.DataFrame:
        return current.filter(pl.col("org_unit_id") == unit).drop("org_unit_id")
