"""Pure queries: LazyFrames and keyword arguments in, a LazyFrame out.

No I/O and no ``collect()`` here; the caller decides when and where to collect.
The frames are those of :class:`kenbun_analytics.store.Snapshot`.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from kenbun_analytics.store import MONEY

GROUP_BY_COLUMNS = ("campaign", "source", "medium")
DRILLDOWN_LIMIT = 500


def _in_window(start: datetime | None, end: datetime | None) -> pl.Expr:
    condition = pl.lit(value=True)
    if start is not None:
        condition = condition & (pl.col("occurred_at") >= start)
    if end is not None:
        condition = condition & (pl.col("occurred_at") <= end)
    return condition


def campaign_rows(
    events: pl.LazyFrame,
    leads: pl.LazyFrame,
    accounts: pl.LazyFrame,
    *,
    group_by: str,
    start: datetime | None,
    end: datetime | None,
) -> pl.LazyFrame:
    """One row per UTM value of ``group_by`` with counting events in the window.

    Deals are reached through the distinct accounts of the value's leads; each
    account's deal totals are precomputed, so summing them over distinct
    accounts counts every deal exactly once.
    """
    counted = events.filter(_in_window(start, end) & pl.col(group_by).is_not_null()).select(
        pl.col(group_by).alias("name"), "lead_id", "occurred_at", "points"
    )
    totals = counted.group_by("name").agg(
        pl.len().cast(pl.Int64).alias("total_events"),
        pl.col("lead_id").drop_nulls().n_unique().cast(pl.Int64).alias("unique_leads"),
        pl.col("points").sum().alias("total_points"),
        pl.col("occurred_at").min().alias("first_event_at"),
        pl.col("occurred_at").max().alias("last_event_at"),
    )
    value_leads = (
        counted.filter(pl.col("lead_id").is_not_null())
        .select("name", "lead_id")
        .unique()
        .join(leads.select("lead_id", "is_mql", "account_id"), on="lead_id", how="left")
    )
    mqls = value_leads.group_by("name").agg(
        pl.col("is_mql").fill_null(value=False).sum().cast(pl.Int64).alias("mql_count")
    )
    deals = (
        value_leads.filter(pl.col("account_id").is_not_null())
        .select("name", "account_id")
        .unique()
        .join(accounts, on="account_id", how="inner")
        .group_by("name")
        .agg(
            pl.col("deals_count").sum().alias("deals_count"),
            pl.col("pipeline_value").sum().cast(MONEY).alias("pipeline_value"),
            pl.col("closed_won_value").sum().cast(MONEY).alias("closed_won_value"),
        )
    )
    zero = pl.lit(0).cast(MONEY)
    return (
        totals.join(mqls, on="name", how="left")
        .join(deals, on="name", how="left")
        .select(
            "name",
            "total_events",
            "unique_leads",
            pl.col("mql_count").fill_null(0),
            "total_points",
            pl.col("deals_count").fill_null(0),
            pl.col("pipeline_value").fill_null(zero),
            pl.col("closed_won_value").fill_null(zero),
            "first_event_at",
            "last_event_at",
        )
        .sort(["total_events", "name"], descending=[True, False])
    )


def campaign_leads(
    events: pl.LazyFrame,
    leads: pl.LazyFrame,
    *,
    group_by: str,
    value: str,
    start: datetime | None,
    end: datetime | None,
    limit: int = DRILLDOWN_LIMIT,
) -> pl.LazyFrame:
    """The leads behind one UTM value, most recent first touch first."""
    touches = (
        events.filter(
            _in_window(start, end) & (pl.col(group_by) == value) & pl.col("lead_id").is_not_null()
        )
        .group_by("lead_id")
        .agg(
            pl.col("occurred_at").min().alias("first_touch_at"),
            pl.col("occurred_at").max().alias("last_touch_at"),
        )
        .sort(["first_touch_at", "lead_id"], descending=[True, False])
        .head(limit)
    )
    return (
        touches.join(leads.drop("is_mql"), on="lead_id", how="left", maintain_order="left")
        .with_columns(pl.col("score").fill_null(0))
        .select(
            "lead_id",
            "display_name",
            "email",
            "first_name",
            "last_name",
            "title",
            "company",
            "score",
            "level",
            "account_id",
            "account_name",
            "deal_stage",
            "deal_amount",
            "first_touch_at",
            "last_touch_at",
        )
    )
