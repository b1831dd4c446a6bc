"""Pure queries: frames and keyword arguments in, rows out; no I/O.

The aggregate is one lazy plan over the window's whole days, read from the
day totals, and the events of its partial first and last day. The drilldown works on
a value's few rows: it gathers them, aggregates them lazily, and gathers the
facts of the leads it keeps by code.

The frames are those of :class:`kenbun_analytics.engine.layout.Layout`; ``lo`` and
``hi`` are the window's row range in the time-sorted events
(:func:`window_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import polars as pl

from kenbun_analytics.engine.codes import names_frame, uuid_text
from kenbun_analytics.engine.days import deal_sums, value_sums
from kenbun_analytics.engine.frames import DAY, MONEY, NO_PREVIOUS, previous_day
from kenbun_analytics.engine.index import sorted_search
from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.engine.previous import account_of, event_day
from kenbun_analytics.engine.times import Times

DRILLDOWN_LIMIT = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COUNTS = ("total_events", "unique_leads", "mql_count", "total_points", "deals_count")
CAMPAIGN_ROW = pl.Schema(
    {
        "name": pl.String(),
        **dict.fromkeys(COUNTS, pl.Int64()),
        "pipeline_value": MONEY,
        "closed_won_value": MONEY,
        "first_event_at": pl.Datetime("us", "UTC"),
        "last_event_at": pl.Datetime("us", "UTC"),
    }
)


SMALL_WINDOW = 1 << 18
"""A query over fewer rows than this is collected on Polars' in-memory engine,
whose fixed cost is the smaller; the streaming engine is the faster on more."""


def engine(rows: int) -> Literal["in-memory", "streaming"]:
    """The engine to collect a query over ``rows`` events on."""
    return "in-memory" if rows < SMALL_WINDOW else "streaming"


def window_rows(times: Times, start: datetime | None, end: datetime | None) -> tuple[int, int]:
    """The row range [lo, hi) of the events with start <= occurred_at <= end.

    The times are sorted, so both ends are binary searches.
    """
    lo = 0 if start is None else times.search(_micros(start), side="left")
    hi = len(times) if end is None else times.search(_micros(end), side="right")
    return lo, max(lo, hi)


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class DaySplit:
    """A window's rows [lo, hi) as whole UTC days and the rows around them."""

    raw: tuple[tuple[int, int], ...]
    """Row ranges aggregated from the events: the partial first and last day."""
    whole: tuple[int, int]
    """The rows of the whole days (empty when there are none)."""
    days: tuple[int, int]
    """The rows of the whole days in the day totals."""


def day_split(times: Times, days: pl.Series, lo: int, hi: int) -> DaySplit:
    """Split rows [lo, hi) of the time-sorted events at UTC midnights.

    ``days`` is the sorted day column of the day totals. A day is whole when
    the window holds every event of it: it starts after the time of the last
    row before the window (any time, for the first row) and ends at or before
    the time of the first row past it.
    """
    if lo >= hi:
        return DaySplit(raw=(), whole=(lo, lo), days=(0, 0))
    # The first midnight after the row before lo: no event lies between the two.
    first_day = -(-(times.micros(lo - 1) + 1) // DAY) if lo > 0 else times.micros(0) // DAY
    end_day = times.micros(hi) // DAY if hi < len(times) else times.micros(hi - 1) // DAY + 1
    if first_day >= end_day:
        return DaySplit(raw=((lo, hi),), whole=(lo, lo), days=(0, 0))
    start_row = times.search(first_day * DAY, side="left")
    end_row = times.search(end_day * DAY, side="left")
    raw = tuple((a, b) for a, b in ((lo, start_row), (end_row, hi)) if b > a)
    first_day_row, end_day_row = sorted_search(days, [first_day, end_day])
    return DaySplit(
        raw=raw,
        whole=(start_row, end_row),
        days=(first_day_row, end_day_row),
    )


@dataclass(frozen=True, slots=True)
class Cut:
    """Where rows [lo, hi) start in the previous-day columns.

    An event's previous pair event lies before ``lo`` exactly when its day is
    before ``previous`` (the day of row lo - 1, 0 when lo is 0), or is that
    day and its pair has no event in rows [lo, head_end): the window's rows on
    that same day, none when the window starts on a new day.
    """

    previous: int
    head_end: int


def window_cut(times: Times, lo: int, hi: int) -> Cut:
    if lo == 0 or lo >= hi:
        return Cut(previous=NO_PREVIOUS, head_end=lo)
    before = times.micros(lo - 1)
    next_day = times.search((before // DAY + 1) * DAY, side="left")
    return Cut(previous=event_day(before, times.micros(0)), head_end=min(max(next_day, lo), hi))


def _firsts(
    frame: pl.LazyFrame,
    previous: pl.Expr,
    cut: Cut,
    *,
    columns: list[str | pl.Expr],
    pair: list[str],
    head: pl.LazyFrame | None,
    seen_before: bool = False,
) -> pl.LazyFrame:
    """``columns`` of the events of ``frame`` (rows past the window's first
    day) that are the first of their pair in the window; with ``seen_before``,
    only those whose pair has an event before it. ``head`` holds the pairs of
    the window's first day when it is split (:class:`Cut`); events without a
    pair (a null in it) are left out."""
    low = NO_PREVIOUS + 1 if seen_before else NO_PREVIOUS
    if cut.previous < low:
        return frame.select(columns).clear()
    if head is None:  # the day of row lo - 1 lies wholly before the window: one filter
        return frame.filter(previous.is_between(low, cut.previous)).select(columns).drop_nulls(pair)
    parts = [frame.filter(previous == cut.previous).select(columns).join(head, on=pair, how="anti")]
    if cut.previous > low:
        parts.append(frame.filter(previous.is_between(low, cut.previous - 1)).select(columns))
    return pl.concat(parts).drop_nulls(pair)


def campaign_rows(layout: Layout, *, group_by: str, lo: int, hi: int) -> pl.LazyFrame:
    """One row per value of ``group_by`` with counting events in rows [lo, hi).

    An event whose previous event of the same (value, lead) lies before ``lo``
    is the first of that pair in the window: counting those counts distinct
    leads (:class:`Cut` tells them by day). The same with (value, account)
    reaches each account, and so each of its deals, exactly once. Whole days
    come from the day totals, which count the pairs first seen ever; the pairs
    seen before ``lo`` that come back in those days are added from the events.
    """
    events = layout.events.lazy()
    accounts = layout.accounts.lazy()
    account = account_of(layout.leads)
    times = layout.times
    day_rows = layout.days[group_by]
    split = day_split(times, day_rows.get_column("day"), lo, hi)
    cut = window_cut(times, lo, hi)

    def timed(start: int, end: int) -> pl.LazyFrame:
        """The events of rows [start, end) with their times."""
        return layout.events.slice(start, end - start).with_columns(times.slice(start, end)).lazy()

    lead_pair, account_pair = [group_by, "lead"], [group_by, "account"]
    pieces: list[pl.LazyFrame] = []
    head_leads = head_accounts = None
    if cut.head_end > lo:
        # The window's first day, split: its pairs are hashed, and they settle
        # the events whose previous pair event lies somewhere on that day.
        head = timed(lo, cut.head_end)
        head_leads = head.select(*lead_pair, "is_mql").drop_nulls(lead_pair).unique(lead_pair)
        head_accounts = head.select(group_by, account).drop_nulls(account_pair).unique()
        pieces += [
            _sums(head, group_by),
            _lead_counts(head_leads, group_by),
            deal_sums(head_accounts, accounts, [group_by]),
        ]

    def first_pairs(frame: pl.LazyFrame, *, seen_before: bool = False) -> list[pl.LazyFrame]:
        """Leads, MQLs and deals of the pairs whose first event in the window
        is in ``frame`` (see :func:`_firsts`)."""
        leads = _firsts(
            frame,
            pl.col(previous_day(group_by, "lead")),
            cut,
            columns=[*lead_pair, "is_mql"],
            pair=lead_pair,
            head=head_leads,
            seen_before=seen_before,
        )
        reached = _firsts(
            frame,
            pl.col(previous_day(group_by, "account")),
            cut,
            columns=[group_by, account],
            pair=account_pair,
            head=head_accounts,
            seen_before=seen_before,
        )
        return [_lead_counts(leads, group_by), deal_sums(reached, accounts, [group_by])]

    rest = [(max(a, cut.head_end), b) for a, b in split.raw if max(a, cut.head_end) < b]
    if rest:
        # No filter on the key here: filtering would copy every column of the slice.
        # Events without a value form one null group, dropped at the end.
        raw = pl.concat([timed(a, b) for a, b in rest])
        pieces += [_sums(raw, group_by), *first_pairs(raw)]
    start, end = split.days
    if end > start:
        every_day = (start, end) == (0, day_rows.height)
        day_sums = (
            layout.value_sums[group_by]
            if every_day
            else value_sums(day_rows.slice(start, end - start), group_by)
        )
        pieces.append(day_sums.lazy())
    whole_start, whole_end = split.whole
    if whole_end > whole_start and lo > 0:
        whole = events.slice(whole_start, whole_end - whole_start)
        pieces += first_pairs(whole, seen_before=True)
    code = layout.events.schema[group_by]  # as narrow as the dictionary allows
    names = (
        names_frame(layout.dictionaries.of(group_by))
        .lazy()
        .select(pl.col("code").cast(code).alias(group_by), "name")
    )
    zero = pl.lit(0).cast(MONEY)
    # The empty frame first gives every piece every column.
    empty = pl.LazyFrame(schema={group_by: code, **CAMPAIGN_ROW}).drop("name")
    if end > start and len(pieces) == 1:
        # Whole days alone (the whole range, say): one row per value already,
        # in the row's types, and no null value among them.
        sums = pieces[0].with_columns(pl.col(group_by).cast(code))
    else:
        sums = (
            pl.concat([empty, *pieces], how="diagonal")
            .group_by(group_by)
            .agg(
                pl.col("total_events").sum(),
                pl.col("unique_leads").sum(),
                pl.col("mql_count").sum(),
                pl.col("total_points").sum(),
                pl.col("deals_count").sum(),
                pl.col("pipeline_value").sum().cast(MONEY),
                pl.col("closed_won_value").sum().cast(MONEY),
                pl.col("first_event_at").min(),
                pl.col("last_event_at").max(),
            )
            .filter(pl.col(group_by).is_not_null())
        )
    return (
        sums.join(names, on=group_by, how="inner")
        .select(
            "name",
            *(pl.col(c).fill_null(0) for c in COUNTS),
            *(pl.col(c).fill_null(zero) for c in ("pipeline_value", "closed_won_value")),
            "first_event_at",
            "last_event_at",
        )
        .sort(["total_events", "name"], descending=[True, False])
    )


def _sums(events: pl.LazyFrame, group_by: str) -> pl.LazyFrame:
    return events.group_by(group_by).agg(
        pl.len().cast(pl.Int64).alias("total_events"),
        pl.col("points").cast(pl.Int64).sum().alias("total_points"),
        pl.col("occurred_at").min().alias("first_event_at"),
        pl.col("occurred_at").max().alias("last_event_at"),
    )


def _lead_counts(leads: pl.LazyFrame, group_by: str) -> pl.LazyFrame:
    """``unique_leads`` and ``mql_count`` of one row per distinct (value, lead)."""
    return leads.group_by(group_by).agg(
        pl.len().cast(pl.Int64).alias("unique_leads"),
        pl.col("is_mql").sum().cast(pl.Int64).alias("mql_count"),
    )


def campaign_leads(
    layout: Layout,
    *,
    rows: pl.Series,
    limit: int = DRILLDOWN_LIMIT,
) -> pl.DataFrame:
    """The leads behind one value, most recent first touch first, then lead_id.

    ``rows`` are the value's events inside the window (``Layout.rows_of``).
    Everything here costs in proportion to those rows, never to the org unit:
    the touched rows are gathered first, the touches are aggregated per lead
    code, and the lead details (``layout.details`` is in lead-code order, as the
    ``lead_key`` dictionary is) are gathered for the at most ``limit`` leads
    kept. Only leads whose first touch can still make the cut (the ``limit``
    latest, ties included) get their key, which breaks ties: a uuid's canonical
    text (fixed width, lowercase hex) sorts as its 128-bit integer does, so
    ordering by key is ordering by lead_id.
    """
    touched = pl.DataFrame(
        [layout.events.get_column("lead").gather(rows), layout.times.gather(rows)]
    )
    lead_keys = layout.dictionaries.lead_key
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
        candidates.with_columns(lead_keys.gather(candidates.get_column("lead")))
        .sort(["first_touch_at", "lead_key"], descending=[True, False])
        .head(limit)
    )
    codes = top.get_column("lead")
    facts = layout.details.take(codes)
    return pl.concat(
        [
            uuid_text(top.get_column("lead_key")).alias("lead_id").to_frame(),
            facts.with_columns(pl.col("score").fill_null(0)),
            top.select("first_touch_at", "last_touch_at"),
        ],
        how="horizontal",
    )
