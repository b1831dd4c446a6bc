"""Pure queries: frames and keyword arguments in, rows out; no I/O.

The aggregate is one lazy plan over the window's slice. The drilldown works on
a value's few rows: it gathers them, aggregates them lazily, and gathers the
facts of the leads it keeps by code.

The frames are those of :class:`kenbun_analytics.layout.Layout`; ``lo`` and
``hi`` are the window's row range in the time-sorted events
(:func:`window_rows`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from kenbun_analytics.layout import MONEY

DRILLDOWN_LIMIT = 500
LEAD_COLUMNS = (
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
)
"""The drilldown's per-lead columns between lead_id and the touch times, in order."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_rows(
    occurred_at: pl.Series, start: datetime | None, end: datetime | None
) -> tuple[int, int]:
    """The row range [lo, hi) of the events with start <= occurred_at <= end.

    ``occurred_at`` is sorted, so both ends are binary searches.
    """
    micros = occurred_at.to_physical()  # zero-copy; searching integers skips a conversion
    lo = 0 if start is None else int(micros.search_sorted(_micros(start), side="left"))
    hi = micros.len() if end is None else int(micros.search_sorted(_micros(end), side="right"))
    return lo, max(lo, hi)


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def campaign_rows(
    events: pl.LazyFrame,
    names: pl.LazyFrame,
    accounts: pl.LazyFrame,
    *,
    group_by: str,
    lo: int,
    hi: int,
) -> pl.LazyFrame:
    """One row per value of ``group_by`` with counting events in rows [lo, hi).

    An event whose previous event of the same (value, lead) lies before ``lo``
    is the first of that pair in the window: counting those counts distinct
    leads. The same with (value, account) reaches each account, and so each of
    its deals, exactly once.
    """
    # No filter on the key here: filtering would copy every column of the window.
    # Events without a value form one null group, dropped after aggregating.
    window = events.slice(lo, hi - lo)
    first_of_lead = (pl.col(f"{group_by}_prev_lead") < lo) & pl.col("lead").is_not_null()
    totals = window.group_by(group_by).agg(
        pl.len().cast(pl.Int64).alias("total_events"),
        first_of_lead.sum().cast(pl.Int64).alias("unique_leads"),
        (first_of_lead & pl.col("is_mql")).sum().cast(pl.Int64).alias("mql_count"),
        pl.col("points").cast(pl.Int64).sum().alias("total_points"),
        pl.col("occurred_at").min().alias("first_event_at"),
        pl.col("occurred_at").max().alias("last_event_at"),
    )
    deals = (
        window.filter((pl.col(f"{group_by}_prev_account") < lo) & pl.col("account").is_not_null())
        .select(group_by, "account")
        .join(accounts, on="account", how="inner")
        .group_by(group_by)
        .agg(
            pl.col("deals_count").sum().alias("deals_count"),
            pl.col("pipeline_value").sum().cast(MONEY).alias("pipeline_value"),
            pl.col("closed_won_value").sum().cast(MONEY).alias("closed_won_value"),
        )
    )
    zero = pl.lit(0).cast(MONEY)
    return (
        totals.filter(pl.col(group_by).is_not_null())
        .join(deals, on=group_by, how="left")
        .join(names.rename({"code": group_by}), on=group_by, how="inner")
        .select(
            "name",
            "total_events",
            "unique_leads",
            "mql_count",
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
    events: pl.DataFrame,
    leads: pl.DataFrame,
    *,
    rows: pl.Series,
    limit: int = DRILLDOWN_LIMIT,
) -> pl.DataFrame:
    """The leads behind one value, most recent first touch first, then lead_id.

    ``rows`` are the value's events inside the window (``ValueIndex.rows_of``).
    Everything here costs in proportion to those rows, never to the org unit:
    the touched rows are gathered first, the touches are aggregated per lead
    code, and the lead facts (``leads`` is in lead-code order) are gathered for
    the at most ``limit`` leads kept. Only leads whose first touch can still
    make the cut (the ``limit`` latest, ties included) get their lead_id, which
    breaks ties in the order.
    """
    touched = events.select(pl.col("lead").gather(rows), pl.col("occurred_at").gather(rows))
    lead_ids = leads.get_column("lead_id")
    candidates = (
        touched.lazy()
        .filter(pl.col("lead").is_not_null())
        .group_by("lead")
        .agg(
            pl.col("occurred_at").min().alias("first_touch_at"),
            pl.col("occurred_at").max().alias("last_touch_at"),
        )
    ).collect()
    if candidates.height > limit:
        threshold = candidates.get_column("first_touch_at").top_k(limit).min()
        candidates = candidates.filter(pl.col("first_touch_at") >= threshold)
    top = (
        candidates.with_columns(lead_ids.gather(candidates.get_column("lead")))
        .sort(["first_touch_at", "lead_id"], descending=[True, False])
        .head(limit)
    )
    codes = top.get_column("lead")
    facts = leads.select(pl.col(name).gather(codes) for name in LEAD_COLUMNS)
    return pl.concat(
        [
            top.select("lead_id"),
            facts.with_columns(pl.col("score").fill_null(0)),
            top.select("first_touch_at", "last_touch_at"),
        ],
        how="horizontal",
    )
