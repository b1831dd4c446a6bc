"""Immutable per-org-unit snapshots and their atomic swap; nothing else.

A request takes one :class:`Snapshot` reference and computes everything from
it, so it always sees one whole snapshot. A refresh builds a new snapshot
beside the old one and swaps the reference in one assignment.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from kenbun_analytics.errors import NotReady

EVENTS_SCHEMA = pl.Schema(
    {
        "event_id": pl.Int64(),
        "occurred_at": pl.Datetime("us", "UTC"),
        "lead_id": pl.String(),
        "campaign": pl.String(),
        "source": pl.String(),
        "medium": pl.String(),
        "points": pl.Int64(),
    }
)
MONEY = pl.Decimal(38, 2)
LEADS_SCHEMA = pl.Schema(
    {
        "lead_id": pl.String(),
        "is_mql": pl.Boolean(),
        "account_id": pl.String(),
        "display_name": pl.String(),
        "email": pl.String(),
        "first_name": pl.String(),
        "last_name": pl.String(),
        "title": pl.String(),
        "company": pl.String(),
        "score": pl.Int64(),
        "level": pl.String(),
        "account_name": pl.String(),
        "deal_stage": pl.String(),
        "deal_amount": MONEY,
    }
)
ACCOUNTS_SCHEMA = pl.Schema(
    {
        "account_id": pl.String(),
        "deals_count": pl.Int64(),
        "pipeline_value": MONEY,
        "closed_won_value": MONEY,
    }
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the endpoints need of one org unit, as of ``taken_at``.

    ``events`` holds only events that can count (no normalized duplicates, at
    least one non-empty UTM key), sorted by ``occurred_at``. ``leads`` holds
    per-lead facts (MQL flag, account, drilldown fields, most recent deal).
    ``accounts`` holds per-account deal totals.
    """

    org_unit_id: str
    taken_at: datetime
    version: int
    events: pl.DataFrame
    leads: pl.DataFrame
    accounts: pl.DataFrame


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

    def retain(self, org_unit_ids: set[str]) -> None:
        """Drop the snapshots of org units that no longer exist."""
        with self._lock:
            self._snapshots = {
                unit: snapshot for unit, snapshot in self._snapshots.items() if unit in org_unit_ids
            }

    def all(self) -> dict[str, Snapshot]:
        return self._snapshots
