"""Day totals: per UTM key, the sums of each whole UTC day, held narrow."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from kenbun_analytics.engine.frames import (
    DAY,
    MONEY,
    NO_PREVIOUS,
    ROW,
    Narrower,
    narrowest,
    previous_day,
)


def deal_sums(pairs: pl.LazyFrame, accounts: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """Deal totals of the accounts in ``pairs`` (an ``account`` column), summed per ``by``."""
    return (
        pairs.join(accounts, on="account", how="inner")
        .group_by(by)
        .agg(
            pl.col("deals_count").sum().alias("deals_count"),
            pl.col("pipeline_value").sum().cast(MONEY).alias("pipeline_value"),
            pl.col("closed_won_value").sum().cast(MONEY).alias("closed_won_value"),
        )
    )


def day_number() -> pl.Expr:
    """The UTC day of ``occurred_at``, counted from the epoch, as column ``day``."""
    return (pl.col("occurred_at").to_physical() // DAY).cast(pl.Int32).alias("day")


def day_totals(events: pl.DataFrame, accounts: pl.DataFrame, key: str) -> pl.DataFrame:
    """One row per (UTC day, value of ``key``), sorted by day then code.

    ``new_leads``, ``new_mqls`` and the deal columns count only the first event
    ever of each (value, lead) and (value, account) pair, so they add up over
    any run of whole days that starts at the first event. The counts of events
    are :data:`ROW` integers, as row numbers are; the queries sum them as Int64.
    """
    day = day_number()
    new_lead = (pl.col(previous_day(key, "lead")) == NO_PREVIOUS) & pl.col("lead").is_not_null()
    new_account = (pl.col(previous_day(key, "account")) == NO_PREVIOUS) & pl.col(
        "account"
    ).is_not_null()
    keyed = events.lazy().filter(pl.col(key).is_not_null())
    totals = keyed.group_by(day, key).agg(
        pl.len().cast(ROW).alias("total_events"),
        pl.col("points").cast(pl.Int64).sum().alias("total_points"),
        pl.col("occurred_at").min().alias("first_event_at"),
        pl.col("occurred_at").max().alias("last_event_at"),
        new_lead.sum().cast(ROW).alias("new_leads"),
        (new_lead & pl.col("is_mql")).sum().cast(ROW).alias("new_mqls"),
    )
    deals = deal_sums(
        keyed.filter(new_account).select(day, key, "account"), accounts.lazy(), ["day", key]
    )
    zero = pl.lit(0).cast(MONEY)
    return (
        totals.join(deals, on=["day", key], how="left")
        .with_columns(
            pl.col("deals_count").fill_null(0),
            pl.col("pipeline_value").fill_null(zero),
            pl.col("closed_won_value").fill_null(zero),
        )
        .sort("day", key)
        .collect()
    )


COUNT_TYPES: Narrower = (
    (pl.UInt8(), 0, (1 << 8) - 1),
    (pl.UInt16(), 0, (1 << 16) - 1),
    (pl.UInt32(), 0, (1 << 32) - 1),
)


SUM_TYPES: Narrower = (
    (pl.Int8(), -(1 << 7), (1 << 7) - 1),
    (pl.Int16(), -(1 << 15), (1 << 15) - 1),
    (pl.Int32(), -(1 << 31), (1 << 31) - 1),
)


DAY_NARROWING: dict[str, tuple[Narrower, pl.DataType]] = {
    "day": (((pl.UInt16(), 0, (1 << 16) - 1),), pl.Int32()),
    "total_events": (COUNT_TYPES, ROW),
    "total_points": (SUM_TYPES, pl.Int64()),
    "new_leads": (COUNT_TYPES, ROW),
    "new_mqls": (COUNT_TYPES, ROW),
    "deals_count": (COUNT_TYPES, pl.Int64()),
}
"""The day-total columns held narrower than :func:`day_totals` makes them: the
narrower types, narrowest first, and the type :func:`day_totals` makes."""


MONEY_SUMS = ("pipeline_value", "closed_won_value")


CENTS = pl.Int64()
"""Money held as its integer number of cents (8 bytes, where :data:`MONEY` takes 16)."""


def money_of_cents(cents: pl.Expr) -> pl.Expr:
    """An integer number of cents as exact :data:`MONEY`."""
    return (cents.cast(pl.Decimal(38, 0)) * pl.lit(Decimal("0.01"), dtype=MONEY)).cast(MONEY)


def compact_days(totals: pl.DataFrame) -> pl.DataFrame:
    """Day totals (:func:`day_totals`, or :func:`summable_days`) in the narrowest
    types holding their values: most cells hold a few events, and money as
    cents while every sum fits in 64 bits."""

    def narrow(name: str) -> pl.Series:
        column = totals.get_column(name)
        types, wide = DAY_NARROWING[name]
        return column.cast(narrowest(column.min(), column.max(), types, wide))  # type: ignore[arg-type]

    def cents(name: str) -> pl.Series:
        units = totals.get_column(name).to_physical()  # cents, of MONEY or summable_days
        held = units.cast(CENTS, strict=False)  # null where a sum is past 64 bits
        if held.null_count() == units.null_count():
            return held
        return pl.select(money_of_cents(pl.lit(units))).to_series().alias(name)

    return totals.with_columns(
        *(narrow(name) for name in DAY_NARROWING), *(cents(name) for name in MONEY_SUMS)
    )


def summable_days(totals: pl.DataFrame) -> pl.DataFrame:
    """Day totals, narrow (:func:`compact_days`) or as :func:`day_totals` makes
    them, in types their sums do not outgrow: the counts as :func:`day_totals`
    makes them, money as 128-bit integer cents (a patch adds and subtracts
    them; no decimal arithmetic on every row)."""
    return totals.with_columns(
        *(pl.col(name).cast(wide) for name, (_, wide) in DAY_NARROWING.items()),
        *(pl.col(name).to_physical().cast(pl.Int128) for name in MONEY_SUMS),
    )


VALUE_SUMS = (
    "total_events",
    "unique_leads",
    "mql_count",
    "total_points",
    "deals_count",
    *MONEY_SUMS,
    "first_event_at",
    "last_event_at",
)
"""The columns of :func:`value_sums` after the value's code, in an aggregate row's order."""


def value_sums(days: pl.DataFrame, group_by: str) -> pl.DataFrame:
    """The sums per value of day totals (held narrow, :func:`compact_days`), in
    the types of an aggregate row (:data:`VALUE_SUMS`).

    The values are dense integer codes, so each column is summed into an array
    indexed by code with NumPy's unbuffered ``add.at`` (and ``minimum.at``,
    ``maximum.at`` for the times): a Polars group-by hashes every day row and
    costs several times more. Sums of Int64 wrap as Polars' do; cents are
    summed as their high and low 32 bits apart, two Int64 sums that cannot
    overflow below 2**31 rows, and joined as 128-bit integers.
    """
    money = [days.schema[name] for name in MONEY_SUMS]
    if any(dtype != CENTS for dtype in money) or not 0 < days.height < 1 << 31 or _has_nulls(days):
        return _grouped_day_sums(days.lazy(), group_by).collect()
    codes = days.get_column(group_by).to_numpy()
    bound = int(codes.max()) + 1
    present = np.flatnonzero(np.bincount(codes, minlength=bound))

    def at(ufunc: np.ufunc, name: str, start: int = 0, values: Any = None) -> Any:
        out = np.full(bound, start, dtype=np.int64)
        column = days.get_column(name).to_physical().to_numpy() if values is None else values
        ufunc.at(out, codes, column.astype(np.int64, copy=False))
        return out[present]

    def cents(name: str) -> pl.Expr:
        units = days.get_column(name).to_numpy()
        low = pl.lit(pl.Series(at(np.add, name, values=units & LOW_BITS))).cast(pl.Int128)
        high = pl.lit(pl.Series(at(np.add, name, values=units >> HALF))).cast(pl.Int128)
        return money_of_cents(high * pl.lit(1 << HALF, dtype=pl.Int128) + low).alias(name)

    times = pl.Datetime("us", "UTC")
    return (
        pl.DataFrame(
            [
                pl.Series(group_by, present, dtype=days.schema[group_by]),
                pl.Series("total_events", at(np.add, "total_events")),
                pl.Series("unique_leads", at(np.add, "new_leads")),
                pl.Series("mql_count", at(np.add, "new_mqls")),
                pl.Series("total_points", at(np.add, "total_points")),
                pl.Series("deals_count", at(np.add, "deals_count")),
                pl.Series("first_event_at", at(np.minimum, "first_event_at", EARLIEST)).cast(times),
                pl.Series("last_event_at", at(np.maximum, "last_event_at", LATEST)).cast(times),
            ]
        )
        .lazy()
        .with_columns(cents(name) for name in MONEY_SUMS)
        .select(group_by, *VALUE_SUMS)
        .collect()
    )


HALF = 32
LOW_BITS = (1 << HALF) - 1
EARLIEST, LATEST = int(np.iinfo(np.int64).max), int(np.iinfo(np.int64).min)
"""Where a running minimum and maximum of times start."""


def _has_nulls(frame: pl.DataFrame) -> bool:
    return any(column.null_count() for column in frame.iter_columns())


def _grouped_day_sums(days: pl.LazyFrame, group_by: str) -> pl.LazyFrame:
    """:func:`value_sums` as a Polars group-by, for day totals whose money is
    held as decimals (a sum past 64 bits of cents)."""
    schema = days.collect_schema()

    def total(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.Int64).sum()

    def money(name: str) -> pl.Expr:
        if schema[name] != CENTS:
            return pl.col(name).sum().cast(MONEY)
        return money_of_cents(pl.col(name).cast(pl.Int128).sum()).alias(name)

    return days.group_by(group_by).agg(
        total("total_events"),
        total("new_leads").alias("unique_leads"),
        total("new_mqls").alias("mql_count"),
        total("total_points"),
        total("deals_count"),
        money("pipeline_value"),
        money("closed_won_value"),
        pl.col("first_event_at").min(),
        pl.col("last_event_at").max(),
    )
