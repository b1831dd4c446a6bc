"""The pure queries on small in-memory frames."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from kenbun_analytics.queries import campaign_leads, campaign_rows
from kenbun_analytics.store import ACCOUNTS_SCHEMA, EVENTS_SCHEMA, LEADS_SCHEMA

T0 = datetime(2026, 3, 1, tzinfo=UTC)
T1 = datetime(2026, 3, 2, tzinfo=UTC)


def events(*rows: tuple[str | None, str | None, datetime, int]) -> pl.LazyFrame:
    """Rows of (campaign, lead_id, occurred_at, points)."""
    return pl.DataFrame(
        [
            {
                "event_id": i,
                "occurred_at": t,
                "lead_id": lead,
                "campaign": c,
                "source": None,
                "medium": None,
                "points": p,
            }
            for i, (c, lead, t, p) in enumerate(rows)
        ],
        schema=EVENTS_SCHEMA,
    ).lazy()


def leads(*rows: tuple[str, bool, str | None]) -> pl.LazyFrame:
    """Rows of (lead_id, is_mql, account_id)."""
    base = dict.fromkeys(LEADS_SCHEMA.names())
    return pl.DataFrame(
        [
            {**base, "lead_id": lead, "is_mql": mql, "account_id": account, "score": 0}
            for lead, mql, account in rows
        ],
        schema=LEADS_SCHEMA,
    ).lazy()


def accounts(*rows: tuple[str, int, str, str]) -> pl.LazyFrame:
    return pl.DataFrame(
        [
            {
                "account_id": a,
                "deals_count": n,
                "pipeline_value": Decimal(p),
                "closed_won_value": Decimal(w),
            }
            for a, n, p, w in rows
        ],
        schema=ACCOUNTS_SCHEMA,
    ).lazy()


def collected(frame: pl.LazyFrame, *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in frame.select(columns).collect().iter_rows()]


@pytest.mark.parametrize(
    ("event_rows", "expected"),
    [
        ([], []),
        (
            [("a", "L1", T0, 1), ("a", "L1", T1, 2), ("a", None, T0, 3)],
            [("a", 3, 1, 1, 6, 1, Decimal("100.50"))],
        ),
        (
            [("a", "L2", T0, 0), ("b", "L1", T0, 0), ("b", "L3", T0, 0)],
            [("b", 2, 2, 1, 0, 1, Decimal("100.50")), ("a", 1, 1, 0, 0, 1, Decimal("100.50"))],
        ),
        ([("a", "L1", T0, 0), ("a", "L2", T0, 0)], [("a", 2, 2, 1, 0, 1, Decimal("100.50"))]),
        ([("x", "missing", T0, 5)], [("x", 1, 1, 0, 5, 0, Decimal(0))]),
    ],
)
def test_campaign_rows(event_rows: list[Any], expected: list[tuple[Any, ...]]) -> None:
    """Counts, distinct leads, MQLs, points and deals through distinct accounts."""
    frame = campaign_rows(
        events(*event_rows),
        leads(("L1", True, "A1"), ("L2", False, "A1"), ("L3", False, None)),
        accounts(("A1", 1, "100.50", "0")),
        group_by="campaign",
        start=None,
        end=None,
    )
    assert (
        collected(
            frame,
            "name",
            "total_events",
            "unique_leads",
            "mql_count",
            "total_points",
            "deals_count",
            "pipeline_value",
        )
        == expected
    )


def test_campaign_leads_orders_and_limits() -> None:
    """Most recent first touch first, lead_id breaking ties, capped by limit."""
    frame = campaign_leads(
        events(("a", "L2", T0, 0), ("a", "L1", T0, 0), ("a", "L3", T1, 0), ("b", "L4", T1, 0)),
        leads(("L1", True, None), ("L2", False, None)),
        group_by="campaign",
        value="a",
        start=None,
        end=None,
        limit=2,
    )
    assert collected(frame, "lead_id", "score") == [("L3", 0), ("L1", 0)]
