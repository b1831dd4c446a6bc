"""Day totals: per UTM key, the sums of each whole UTC day, held narrow."""

from __future__ import annotations

from decimal import Decimal

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
