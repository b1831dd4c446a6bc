"""The refresh job and its timing.

:class:`Refresher` knows how to bring the snapshots up to date; APScheduler
only decides when. A full refresh reloads every org unit; the ones in between
read the change log and refetch only the events that changed, and reload the
small per-lead and per-account facts only of org units whose leads, aliases,
accounts or deals changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
from apscheduler.schedulers.background import BackgroundScheduler

from kenbun_analytics.errors import SourceError
from kenbun_analytics.layout import (
    ACCOUNT_DEALS,
    LEAD_FACTS,
    RAW_EVENTS,
    Dictionaries,
    Layout,
    account_deals_of,
    base_of,
    build,
    encode_events,
    lead_facts_of,
    merge_events,
)
from kenbun_analytics.source import Changes, Source
from kenbun_analytics.store import Snapshot, SnapshotStore, next_version

logger = logging.getLogger(__name__)

CHANGE_LOG_RETENTION_SECONDS = 24 * 3600


def arrow_frame(table: pa.Table, schema: pl.Schema) -> pl.DataFrame:
    frame = pl.DataFrame(pl.from_arrow(table))
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def raw_events_frame(table: pa.Table | None, *, with_org_unit: bool = False) -> pl.DataFrame:
    schema = pl.Schema({"org_unit_id": pl.String(), **RAW_EVENTS}) if with_org_unit else RAW_EVENTS
    if table is None:
        return pl.DataFrame(schema=schema)
    return arrow_frame(table, schema).sort("occurred_at", "event_id")


def full_layout(events: pa.Table, leads: pa.Table, account_deals: pa.Table) -> Layout:
    """The layout of an org unit from scratch."""
    base, dictionaries = encode_events(raw_events_frame(events), Dictionaries.empty())
    return build(
        base,
        dictionaries,
        arrow_frame(leads, LEAD_FACTS),
        arrow_frame(account_deals, ACCOUNT_DEALS),
    )


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


class Refresher:
    """Brings ``store`` up to date with ``source``. Two refreshes never overlap."""

    def __init__(
        self,
        source: Source,
        store: SnapshotStore,
        *,
        full_refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._store = store
        self._full_refresh_seconds = full_refresh_seconds
        self._clock = clock
        self._running = threading.Lock()
        self._xmin: str | None = None
        self._last_full: float | None = None
        self.status = RefreshStatus()

    def request_full(self) -> None:
        """Make the next refresh a full one."""
        self._last_full = None

    def refresh(self, *, wait: bool = False) -> bool:
        """Run one refresh; True when it succeeded.

        The scheduler passes ``wait=False``: a tick that finds a refresh running
        skips. Callers that need the data current now pass ``wait=True``.
        """
        if not self._running.acquire(blocking=wait):
            return False
        started = self._clock()
        try:
            self._refresh()
        except SourceError as error:
            self.status.errors["*"] = str(error)
            logger.warning("snapshot refresh failed, serving the last good snapshots: %s", error)
            return False
        except Exception as error:  # a bug must not stop later ticks or crash the process
            self.status.errors["*"] = f"unexpected {type(error).__name__}"
            logger.error(  # noqa: TRY400 - one line, no traceback in the logs
                "snapshot refresh failed unexpectedly (%s); serving the last good snapshots",
                type(error).__name__,
            )
            return False
        else:
            self.status.errors.pop("*", None)
            self.status.last_success_at = datetime.now(UTC)
            return not self.status.errors
        finally:
            self.status.last_duration_seconds = self._clock() - started
            self._running.release()

    def _refresh(self) -> None:
        taken_at = datetime.now(UTC)
        xmin = self._source.snapshot_xmin()
        units = self._source.org_unit_ids()
        self._store.retain(set(units))
        self.status.errors = {u: e for u, e in self.status.errors.items() if u in units}
        self.status.org_unit_ids = units
        now = self._clock()
        previous_xmin = self._xmin
        full = self._last_full is None or now - self._last_full >= self._full_refresh_seconds
        if full or previous_xmin is None:
            failed = self._load_whole(units, taken_at)
            if not failed:
                self._last_full = now
                self._source.prune_changes(CHANGE_LOG_RETENTION_SECONDS)
        else:
            changes = self._source.changes_since(previous_xmin)
            failed = self._apply_changes(units, changes, taken_at)
        if not failed:
            self._xmin = xmin
            self.status.last_kind = "full" if full else "incremental"

    def _load_whole(self, units: list[str], taken_at: datetime) -> bool:
        failed = False
        for unit in units:
            try:
                layout = full_layout(
                    self._source.events_of(unit),
                    self._source.leads_of(unit),
                    self._source.account_deals_of(unit),
                )
            except SourceError as error:
                failed = True
                self.status.errors[unit] = str(error)
                logger.warning("refresh of org unit %s failed: %s", unit, error)
                continue
            self._store.put(Snapshot(unit, taken_at, next_version(), layout))
            self.status.errors.pop(unit, None)
        return failed

    def _apply_changes(self, units: list[str], changes: Changes, taken_at: datetime) -> bool:
        unit_set = set(units)
        whole = {u for u in units if self._store.find(u) is None} | set(changes.whole_units)
        if changes.everything:
            whole = set(units)
        whole &= unit_set
        partial = (set(changes.dimension_units) | set(changes.event_units)) & unit_set - whole
        failed = self._load_whole(sorted(whole), taken_at)
        if not partial:
            return failed
        changed_ids = pl.Series("event_id", changes.event_ids, dtype=pl.Int64)
        current = raw_events_frame(
            self._source.events_by_id(changes.event_ids) if changes.event_ids else None,
            with_org_unit=True,
        )
        for unit in sorted(partial):
            old = self._store.get(unit).layout
            base, dictionaries = base_of(old), old.dictionaries
            if unit in changes.event_units:
                arrived, dictionaries = encode_events(
                    self._events_of_unit(current, unit), dictionaries
                )
                base = merge_events(base, changed_ids, arrived)
            try:
                if unit in changes.dimension_units:
                    lead_facts = arrow_frame(self._source.leads_of(unit), LEAD_FACTS)
                    account_deals = arrow_frame(self._source.account_deals_of(unit), ACCOUNT_DEALS)
                else:
                    lead_facts, account_deals = lead_facts_of(old), account_deals_of(old)
            except SourceError as error:
                failed = True
                self.status.errors[unit] = str(error)
                continue
            layout = build(base, dictionaries, lead_facts, account_deals)
            self._store.put(Snapshot(unit, taken_at, next_version(), layout))
        return failed

    @staticmethod
    def _events_of_unit(current: pl.DataFrame, unit: str) -> pl.DataFrame:
        return current.filter(pl.col("org_unit_id") == unit).drop("org_unit_id")


def start_scheduler(refresher: Refresher, *, interval_seconds: float) -> BackgroundScheduler:
    """Run ``refresher.refresh`` now and then every ``interval_seconds``, never twice at once."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        refresher.refresh,
        "interval",
        seconds=interval_seconds,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        id="refresh",
    )
    scheduler.start()
    return scheduler
