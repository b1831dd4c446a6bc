"""The schemas of what a load reads and of the base events, and the layout's constants."""

from __future__ import annotations

import polars as pl

MONEY = pl.Decimal(38, 2)


KEYS = ("campaign", "source", "medium")


CODE = pl.UInt32()


ROW = pl.Int32()


PAIRS = tuple((key, other) for key in KEYS for other in ("lead", "account"))
"""The (UTM key, lead or account) pairs that get a previous-event column each."""


NO_PREVIOUS = 0
"""The previous-event day of an event that is the first of its pair."""


def previous_day(key: str, other: str) -> str:
    """The name of the column of the day of each event's previous (key value, other) event."""
    return f"{key}_prev_{other}_day"


DAY = 86_400_000_000
"""Microseconds in a UTC day; day numbers count them from the epoch."""


LEAD_KEY = pl.UInt128()
"""A lead's uuid as one integer (PostgreSQL sends uuids as 16 bytes): hashing
these is several times cheaper than hashing the 36-character texts."""


RAW_EVENTS = pl.Schema(
    {
        "event_id": pl.Int64(),
        "occurred_at": pl.Datetime("us", "UTC"),
        "lead_key": LEAD_KEY,
        "campaign": pl.String(),
        "source": pl.String(),
        "medium": pl.String(),
        "points": pl.Int64(),
    }
)


LEAD_FACTS = pl.Schema(
    {
        "lead_key": LEAD_KEY,
        "is_mql": pl.Boolean(),
        "account_id": pl.String(),
        "display_name": pl.String(),
        "email": pl.String(),
        "first_name": pl.String(),
        "last_name": pl.String(),
        "title": pl.String(),
        "company": pl.String(),
        "score": pl.Int32(),
        "level": pl.String(),
        "account_name": pl.String(),
        "deal_stage": pl.String(),
        "deal_amount": MONEY,
    }
)


ACCOUNT_DEALS = pl.Schema(
    {
        "account_id": pl.String(),
        "deals_count": pl.Int64(),
        "pipeline_value": MONEY,
        "closed_won_value": MONEY,
    }
)


RAW_READ = pl.Schema(
    {
        **{name: dtype for name, dtype in RAW_EVENTS.items() if name != "points"},
        "score_delta": pl.String(),
    }
)
"""Events as read: the text of ``metadata ->> 'score_delta'`` where RAW_EVENTS has points."""


BASE_EVENTS = pl.Schema(
    {
        "event_id": pl.Int64(),
        "occurred_at": pl.Datetime("us", "UTC"),
        "lead": CODE,
        "campaign": CODE,
        "source": CODE,
        "medium": CODE,
        "points": pl.Int32(),
    }
)


Narrower = tuple[tuple[pl.DataType, int, int], ...]
"""Integer types with the smallest and largest value each holds, narrowest first."""


def narrowest(low: int | None, high: int | None, types: Narrower, wide: pl.DataType) -> pl.DataType:
    """The first of ``types`` holding every value in [low, high], else ``wide``
    (the first, when there is no value)."""
    for dtype, smallest, largest in types:
        if low is None or high is None or smallest <= low <= high <= largest:
            return dtype
    return wide


LEAD_COLUMNS = ("is_mql", "account")
"""The per-lead columns the aggregates read: the MQL flag and the account code."""
