"""The previous-pair-day columns: for each event, the day of the previous event
with the same (UTM value, lead) or (UTM value, account)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import polars as pl

from kenbun_analytics.engine.frames import (
    DAY,
    NO_PREVIOUS,
    PAIRS,
    Narrower,
    narrowest,
    previous_day,
)
from kenbun_analytics.engine.index import by_key, code_bound
from kenbun_analytics.engine.times import Times

T = TypeVar("T")


R = TypeVar("R")


def previous_pair_days(frame: pl.DataFrame, key: str, other: str, days: pl.Series) -> pl.Series:
    """For each row, the day (``days`` holds each row's) of the previous row with
    the same (key, other), else :data:`NO_PREVIOUS`.

    Ordered by pair and row, a row's previous pair row is the one before it: the
    days are gathered into that order, shifted, and scattered back, all in their
    own narrow type, which moves fewer bytes than gathering and scattering row
    numbers and then times.
    """
    others = code_bound(frame.get_column(other))
    pair = pl.col(key).cast(pl.UInt64) * others + pl.col(other).cast(pl.UInt64)
    ordered = by_key(frame, pair, code_bound(frame.get_column(key)) * others)
    rows = ordered.get_column("row")
    previous = ordered.select(
        pl.when(pl.col("key") == pl.col("key").shift(1))
        .then(pl.lit(days.gather(rows)).shift(1))
        .otherwise(pl.lit(NO_PREVIOUS, dtype=days.dtype))
    ).to_series()
    result = pl.repeat(NO_PREVIOUS, frame.height, dtype=days.dtype, eager=True)
    result.scatter(rows, previous)
    return result


def event_day(micros: int, first: int) -> int:
    """The UTC day of an event at ``micros`` as the previous-day columns count
    days: the day of the first event (at ``first``) is 1."""
    return micros // DAY - first // DAY + 1


DAY_TYPES: Narrower = ((pl.UInt8(), 0, (1 << 8) - 1), (pl.UInt16(), 0, (1 << 16) - 1))
"""The types of the previous-day columns, narrowest first, by the day numbers they hold."""


def previous_day_dtype(times: Times) -> pl.DataType:
    """UInt8 while the events span fewer than 256 UTC days, UInt16 while they
    span fewer than 65,536, else UInt32: the six columns take 6 bytes an event
    for events of the last eight months, 12 for those of a few years."""
    last = event_day(times.micros(-1), times.micros(0)) if len(times) else None
    return narrowest(0, last, DAY_TYPES, pl.UInt32())


def event_days(times: pl.Series, *, first: int, dtype: pl.DataType) -> pl.Series:
    """The :func:`event_day` of the event at each of ``times``, as ``dtype``;
    ``first`` is the time of the first event."""
    return pl.select((times.to_physical() // DAY - (first // DAY - 1)).cast(dtype)).to_series()


def derive_events(base: pl.DataFrame, leads: pl.DataFrame, times: Times) -> pl.DataFrame:
    """The query frame: base events (at ``times``) plus each lead's MQL flag and
    account, and the day of each event's previous event of each pair."""
    events = with_lead_facts(base, leads)
    first = times.micros(0) if len(times) else 0
    dtype = previous_day_dtype(times)
    days = event_days(events.get_column("occurred_at"), first=first, dtype=dtype)

    def days_of(pair: tuple[str, str]) -> pl.Series:
        return previous_pair_days(events, *pair, days).alias(previous_day(*pair))

    return events.with_columns(side_by_side(days_of, PAIRS))


def side_by_side(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``function`` of each of ``items``, on as many threads as Polars has.

    Polars runs each operation on its thread pool, but a gather, a scatter or a
    conditional runs on one core; two derivations at once keep both busy.
    """
    with ThreadPoolExecutor(max_workers=pl.thread_pool_size()) as pool:
        return list(pool.map(function, items))


def with_lead_facts(base: pl.DataFrame, leads: pl.DataFrame) -> pl.DataFrame:
    """``base`` plus the MQL flag and account code of each event's lead."""
    return base.with_columns(
        pl.lit(leads.get_column("is_mql"))
        .gather(pl.col("lead"))
        .fill_null(value=False)
        .alias("is_mql"),
        account_of(leads),
    )


def account_of(leads: pl.DataFrame) -> pl.Expr:
    """The account code of each row's lead, as column ``account``.

    The layout's events hold no account: it is their lead's, so the queries
    gather it for the few rows that need it, and the derivations add it for
    their own work (:func:`with_lead_facts`). That saves 4 bytes an event.
    """
    return pl.lit(leads.get_column("account")).gather(pl.col("lead")).alias("account")
