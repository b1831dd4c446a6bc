"""Dashboards over a layout: filtered aggregates, totals, time series and pages of leads.

The functions take a :class:`~kenbun_analytics.engine.layout.Layout`, the window as
its row range ``[lo, hi)`` (:func:`kenbun_analytics.engine.queries.window_rows`), the
grouping key and :class:`~kenbun_analytics.engine.filters.Filters`, and give
frames; nothing here reads or writes anything else.

Without filters the aggregate and the first page of leads are today's queries
(:mod:`kenbun_analytics.engine.queries`), unchanged. With filters, the precomputed
previous-day columns and day totals no longer say anything (an event's
previous pair event may be filtered out), so the events that pass are
selected (:func:`~kenbun_analytics.engine.filters.passing_rows`) and counted
afresh, as the events of a time series always are: each event goes to a
*cell* (a value's code; for a time series, a name and a bucket). Events and
points per cell are bincounts; the distinct (cell, lead) and (cell, account)
pairs are found by sorting each pair packed into one 64-bit integer
(:func:`_distinct_pairs`). Totals, a single cell, mark each lead and account
code in an array instead. This work is done when a function is called: a
LazyFrame returned is left only to be collected.

Money is summed as :data:`~kenbun_analytics.engine.frames.MONEY` (exact decimals),
counts as Int64, times are ``Datetime("us", "UTC")``.

A request's way through them, dates in its zone ``tz``::

    start = zones.day_start(start_date, tz)  # or an RFC 3339 bound as it is
    end = zones.day_end(end_date, tz)
    lo, hi = queries.window_rows(layout.times, start, end)
    rows = campaign_rows(layout, group_by=key, lo=lo, hi=hi, filters=filters).collect()
    total = totals(layout, group_by=key, lo=lo, hi=hi, filters=filters)
    span = event_span(layout, group_by=key, lo=lo, hi=hi, filters=filters)
    # Buckets need both ends: a missing bound is the first or last event (span).
    starts = zones.bucket_starts(tz, interval, start or span[0], end or span[1], limit=1000)
    series = timeseries(layout, group_by=key, lo=lo, hi=hi, filters=filters,
                        names=names or top_names(rows),
                        edges=zones.bucket_edges(starts, tz, interval))
    page = lead_page(layout, rows=value_rows(layout, group_by=key, name=name, lo=lo,
                                             hi=hi, filters=filters), offset=0, limit=500)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import numpy as np
import numpy.typing as npt
import polars as pl

from kenbun_analytics.engine import queries
from kenbun_analytics.engine.codes import uuid_text
from kenbun_analytics.engine.filters import (
    NO_FILTERS,
    ROWS,
    Filters,
    gather_events,
    keep_passing,
    passing_rows,
)
from kenbun_analytics.engine.frames import KEYS, MONEY
from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.engine.queries import CAMPAIGN_ROW, COUNTS, DRILLDOWN_LIMIT

MONEY_SUMS = ("pipeline_value", "closed_won_value")
METRICS = (*COUNTS, *MONEY_SUMS)
"""The metrics of a time series, in the order of an aggregate row."""
TOTALS = pl.Schema(
    {
        "values": pl.Int64(),
        **{name: dtype for name, dtype in CAMPAIGN_ROW.items() if name != "name"},
    }
)
"""The one row of :func:`totals`."""
TIMESERIES = pl.Schema(
    {
        "name": pl.String(),
        "bucket": pl.UInt32(),
        **{name: CAMPAIGN_ROW[name] for name in METRICS},
    }
)
"""The rows of :func:`timeseries`: one per name and bucket."""
SERIES_DEFAULT = 10
"""The values a time series charts when it names none: the aggregate's first rows."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Ints = npt.NDArray[np.int64]


def campaign_rows(
    layout: Layout, *, group_by: str, lo: int, hi: int, filters: Filters = NO_FILTERS
) -> pl.LazyFrame:
    """One row per value of ``group_by`` with counting events in rows [lo, hi)
    that pass ``filters`` (:data:`~kenbun_analytics.engine.queries.CAMPAIGN_ROW`, by
    total_events descending, then name by code point).

    Without filters this is :func:`kenbun_analytics.engine.queries.campaign_rows`.
    With filters on ``group_by`` alone, it is that, keeping those values' rows
    (a value's events are all its own). Otherwise every metric is counted over
    the events that pass.
    """
    if not filters:
        return queries.campaign_rows(layout, group_by=group_by, lo=lo, hi=hi)
    if filters.only(group_by):
        names = pl.Series(sorted(filters.values(group_by)), dtype=pl.String)
        return queries.campaign_rows(layout, group_by=group_by, lo=lo, hi=hi).filter(
            pl.col("name").is_in(names.implode())
        )
    frame = _keyed(layout, group_by, passing_rows(layout, filters, lo, hi, ordered=False))
    dictionary = layout.dictionaries.of(group_by)
    cell = frame.get_column("cell").to_numpy().astype(np.int64)
    metrics = _cell_metrics(layout, frame, cell, cells=dictionary.len())
    # Each cell's first and last row, in arrays indexed by cell; the metrics
    # have a row for each cell with events, ascending.
    row = frame.get_column("row").to_numpy().astype(np.int64)
    first = np.full(dictionary.len(), row.size and int(row.max()), dtype=np.int64)
    last = np.zeros(dictionary.len(), dtype=np.int64)
    np.minimum.at(first, cell, row)
    np.maximum.at(last, cell, row)
    cells = metrics.get_column("cell").to_numpy()
    return (
        metrics.with_columns(
            dictionary.gather(cells).alias("name"),
            layout.times.gather(pl.Series(first[cells], dtype=ROWS)).alias("first_event_at"),
            layout.times.gather(pl.Series(last[cells], dtype=ROWS)).alias("last_event_at"),
        )
        .lazy()
        .select(CAMPAIGN_ROW.names())
        .cast(CAMPAIGN_ROW)
        .sort(["total_events", "name"], descending=[True, False])
    )


def totals(
    layout: Layout, *, group_by: str, lo: int, hi: int, filters: Filters = NO_FILTERS
) -> pl.DataFrame:
    """The metrics of one aggregate row (:data:`TOTALS`) over every counting
    event of ``group_by`` (an event with a value of that key) in rows [lo, hi)
    that passes ``filters``, as if all values were one: a lead or a deal
    reached from several values counts once. ``values`` is the number of rows
    :func:`campaign_rows` gives for the same arguments. No such event: counts
    and sums 0, both times null.

    Distinct leads, values and accounts are marked in arrays indexed by code
    (a count per code), not hashed: the window's codes are read in one pass.
    Without filters, the values come from the day totals of the window's
    whole UTC days and from the events of the others.
    """
    if filters:
        frame = _keyed(layout, group_by, passing_rows(layout, filters, lo, hi, ordered=False))
        leads, points = frame.get_column("lead"), frame.get_column("points")
        events = frame.height
        values = int(
            _marked(frame.get_column("cell"), layout.dictionaries.of(group_by).len()).sum()
        )
        span = _row_span(frame.get_column("row"))
    else:
        window = layout.events.slice(lo, hi - lo).select(group_by, "lead", "points")
        keyed = window.get_column(group_by).is_not_null()
        # An event without a value gets a lead code past every lead's: it marks none.
        leads = window.select(
            pl.when(pl.col(group_by).is_not_null()).then("lead").fill_null(_lead_bound(layout))
        ).to_series()
        points = window.get_column("points").filter(keyed)
        events, values = int(keyed.sum()), _values(layout, group_by, lo, hi)
        ends = _ends(keyed)
        span = None if ends is None else (lo + ends[0], lo + ends[1])
    seen_leads = _marked(leads, _lead_bound(layout))
    reached = layout.leads.get_column("account").filter(pl.Series(seen_leads))
    deals = layout.accounts.filter(pl.Series(_marked(reached, layout.accounts.height))).select(
        pl.col("deals_count").sum().cast(pl.Int64),
        *(pl.col(name).sum().cast(MONEY) for name in MONEY_SUMS),
    )
    first, last = (None, None) if span is None else (_time(layout, span[0]), _time(layout, span[1]))
    row = {
        "values": values,
        "total_events": events,
        "unique_leads": int(seen_leads.sum()),
        "mql_count": int(np.count_nonzero(seen_leads & _mqls(layout))),
        "total_points": int(points.cast(pl.Int64).sum()),
        **deals.row(0, named=True),
        "first_event_at": first,
        "last_event_at": last,
    }
    zero = pl.lit(0).cast(MONEY)
    return pl.DataFrame([row], schema=TOTALS).with_columns(
        pl.col("deals_count").fill_null(0), *(pl.col(name).fill_null(zero) for name in MONEY_SUMS)
    )


def top_names(rows: pl.DataFrame, count: int = SERIES_DEFAULT) -> list[str]:
    """The values a time series charts when none are named: the names of the
    first ``count`` rows of the aggregate (:func:`campaign_rows`, collected)
    for the same window, grouping and filters."""
    return rows.get_column("name").head(count).to_list()


def leading_names(
    layout: Layout,
    *,
    group_by: str,
    lo: int,
    hi: int,
    filters: Filters = NO_FILTERS,
    count: int = SERIES_DEFAULT,
) -> list[str]:
    """:func:`top_names` of the aggregate for the same arguments, from each
    value's number of events alone: the aggregate orders its rows by
    ``total_events``, then name by code point (as Python orders texts), and
    has a row for each value with events."""
    events = _value_events(layout, group_by, lo, hi, filters)
    present = np.flatnonzero(events)
    if 0 < count < present.size:
        threshold = np.partition(events[present], present.size - count)[present.size - count]
        present = present[events[present] >= threshold]  # ties at the threshold stay
    names = layout.dictionaries.of(group_by).gather(present).to_list()
    ranked = sorted(zip((-int(n) for n in events[present]), names, strict=True))
    return [name for _, name in ranked[:count]]


def _value_events(layout: Layout, key: str, lo: int, hi: int, filters: Filters) -> Ints:
    """The number of events in rows [lo, hi) passing ``filters``, per code of
    ``key``. Without filters, the window's whole UTC days are read from the
    day totals."""
    events = np.zeros(layout.dictionaries.of(key).len(), dtype=np.int64)

    def add(codes: pl.Series, weights: pl.Series | None = None) -> None:
        keyed = codes.is_not_null()
        codes = codes.filter(keyed)
        if codes.is_empty():
            return
        if weights is None:
            events[:] += np.bincount(codes.to_numpy(), minlength=events.size)
            return
        # Float weights sum exactly: a count of events stays far below 2**53.
        counts = weights.filter(keyed).to_numpy().astype(np.float64)
        events[:] += np.rint(np.bincount(codes.to_numpy(), counts, events.size)).astype(np.int64)

    if filters:
        rows = passing_rows(layout, filters, lo, hi, ordered=False)
        add(gather_events(layout, [key], rows).to_series())
        return events
    days = layout.days[key]
    split = queries.day_split(layout.times, days.get_column("day"), lo, hi)
    start, end = split.days
    whole = days.slice(start, end - start)
    add(whole.get_column(key), whole.get_column("total_events"))
    for first, last in split.raw:
        add(layout.events.get_column(key).slice(first, last - first))
    return events


def event_span(
    layout: Layout, *, group_by: str, lo: int, hi: int, filters: Filters = NO_FILTERS
) -> tuple[datetime, datetime] | None:
    """The times of the first and the last counting event of ``group_by`` in
    rows [lo, hi) that pass ``filters``; None when there is none. A time
    series without a start or an end takes its window from these."""
    if filters:
        rows = passing_rows(layout, filters, lo, hi, ordered=False)
        span = _row_span(_keyed(layout, group_by, rows, ()).get_column("row"))
    else:
        ends = _ends(layout.events.get_column(group_by).slice(lo, hi - lo).is_not_null())
        span = None if ends is None else (lo + ends[0], lo + ends[1])
    return None if span is None else (_time(layout, span[0]), _time(layout, span[1]))


def timeseries(
    layout: Layout,
    *,
    group_by: str,
    lo: int,
    hi: int,
    filters: Filters = NO_FILTERS,
    names: Sequence[str],
    edges: Sequence[int],
) -> pl.DataFrame:
    """The metrics of each of ``names`` in each bucket (:data:`TIMESERIES`):
    for name N and bucket k, N's aggregate row (:func:`campaign_rows`) over
    the window cut to the bucket, zeros where N has no events there. Rows are
    by name in the order given (a repeat charted once, an empty name not at
    all), then by bucket.

    ``edges`` are the buckets' UTC microseconds (ascending): bucket ``k`` holds
    the events at ``edges[k] <= t < edges[k + 1]``
    (:func:`kenbun_analytics.engine.zones.bucket_edges`); only those in rows
    [lo, hi) count, so the first and last buckets are cut by the window.

    An event's bucket is exact and never needs its time: the row where each
    edge falls among the time-sorted events is found by binary search, and
    the charted names' rows, ascending, are split at those rows.
    """
    names = list(dict.fromkeys(name for name in names if name))
    buckets = max(len(edges) - 1, 0)
    cells = len(names) * buckets
    if not cells:
        return pl.DataFrame(schema=TIMESERIES)
    row_edges = np.clip(layout.times.searches(pl.Series(edges, dtype=pl.Int64), "left"), lo, hi)
    charted = set(names) & filters.values(group_by) if filters.values(group_by) else set(names)
    selection = Filters.of(
        **{key: charted if key == group_by else filters.values(key) for key in KEYS}
    )
    # Ascending rows: the gathers read the events in one sweep.
    rows = (
        passing_rows(layout, selection, int(row_edges[0]), int(row_edges[-1]))
        if charted
        else pl.Series("row", [], dtype=ROWS)
    )
    frame = gather_events(layout, [group_by, "lead", "points"], rows)
    # The rows of bucket k are one slice of them, found by binary search.
    sizes = np.diff(np.searchsorted(rows.to_numpy(), row_edges))
    bucket = np.repeat(np.arange(buckets, dtype=np.int64), sizes)
    codes = frame.get_column(group_by).to_numpy().astype(np.intp)
    cell = _positions(layout, group_by, names)[codes] * buckets + bucket
    metrics = _cell_metrics(layout, frame, cell, cells=cells)
    grid = pl.int_range(cells, dtype=pl.Int64, eager=True).alias("cell").to_frame()
    zero = pl.lit(0).cast(MONEY)
    return (
        grid.join(metrics, on="cell", how="left", maintain_order="left")
        .with_columns(
            pl.lit(pl.Series(names, dtype=pl.String))
            .gather(pl.col("cell") // buckets)
            .alias("name"),
            (pl.col("cell") % buckets).cast(pl.UInt32).alias("bucket"),
            *(pl.col(name).fill_null(0) for name in COUNTS),
            *(pl.col(name).fill_null(zero) for name in MONEY_SUMS),
        )
        .select(TIMESERIES.names())
        .cast(TIMESERIES)
    )


def value_rows(
    layout: Layout,
    *,
    group_by: str,
    name: str,
    lo: int,
    hi: int,
    filters: Filters = NO_FILTERS,
) -> pl.Series:
    """The ascending rows in [lo, hi) of the events of value ``name`` of
    ``group_by`` that pass ``filters``: the rows :func:`lead_page` pages
    (none when a filter on ``group_by`` leaves ``name`` out)."""
    wanted = filters.values(group_by)
    code = layout.codes[group_by].get(name) if not wanted or name in wanted else None
    rows = layout.rows_of(group_by, code, lo, hi)
    return keep_passing(layout, filters.without(group_by), rows)


@dataclass(frozen=True, slots=True)
class LeadsPage:
    """A page of a value's leads, and how many leads there are in all."""

    leads: pl.DataFrame
    """The page's rows, as :func:`kenbun_analytics.engine.queries.campaign_leads` gives them."""
    total: int
    """The value's leads before paging."""


def lead_page(
    layout: Layout, *, rows: pl.Series, offset: int = 0, limit: int = DRILLDOWN_LIMIT
) -> LeadsPage:
    """The leads of the events at ``rows`` (ascending: :func:`value_rows`),
    ordered by first touch, latest first, then lead_id, from the ``offset``-th
    on, at most ``limit`` of them; and their number before paging.

    The first page is :func:`kenbun_analytics.engine.queries.campaign_leads`. A later
    one finds each lead's first and last row (one sort of (lead, row) packed
    in 64 bits), keeps the leads whose first touch can reach the page (the
    ``offset + limit`` latest first rows, and every lead tied at the time of
    the earliest of them), orders those by time and id, and gathers times,
    ids and details for the page's leads alone.
    """
    leads = gather_events(layout, ["lead"], rows).to_series()
    if offset == 0:
        page = queries.campaign_leads(layout, rows=rows, limit=limit)
        return LeadsPage(leads=page, total=int(_marked(leads, _lead_bound(layout)).sum()))
    packed = np.sort(
        (leads.fill_null(_lead_bound(layout)).to_numpy().astype(np.uint64) << np.uint64(32))
        | rows.to_numpy().astype(np.uint64)
    )
    lead = packed >> np.uint64(32)
    known = int(np.count_nonzero(lead < _lead_bound(layout)))  # the null leads sort last
    starts = np.flatnonzero(np.diff(lead[:known], prepend=np.uint64(_lead_bound(layout))))
    ends = np.append(starts[1:], known)[: starts.size] - 1
    low = np.uint64((1 << 32) - 1)
    touches = pl.DataFrame(
        {
            "lead": lead[starts].astype(np.uint32),
            "first": (packed[starts] & low).astype(np.uint32),
            "last": (packed[ends] & low).astype(np.uint32),
        }
    )
    total = touches.height
    reach = offset + limit
    if total > reach:
        cut = cast(int, touches.get_column("first").top_k(reach).min())
        # Every lead first touched at that row's time can still make the page.
        tied = layout.times.search(layout.times.micros(cut), side="left")
        touches = touches.filter(pl.col("first") >= tied)
    ordered = (
        touches.with_columns(
            layout.times.gather(touches.get_column("first")).alias("first_touch_at"),
            layout.dictionaries.lead_key.gather(touches.get_column("lead")).alias("lead_key"),
        )
        .sort(["first_touch_at", "lead_key"], descending=[True, False])
        .slice(offset, limit)
    )
    facts = layout.details.take(ordered.get_column("lead"))
    page = pl.concat(
        [
            uuid_text(ordered.get_column("lead_key")).alias("lead_id").to_frame(),
            facts.with_columns(pl.col("score").fill_null(0)),
            ordered.select(
                "first_touch_at",
                layout.times.gather(ordered.get_column("last")).alias("last_touch_at"),
            ),
        ],
        how="horizontal",
    )
    return LeadsPage(leads=page, total=total)


# ------------------------------------------------------------------ helpers --


def _keyed(
    layout: Layout, key: str, rows: pl.Series, columns: Sequence[str] = ("lead", "points")
) -> pl.DataFrame:
    """The events at ``rows`` that have a value of ``key``: that value's code
    (``cell``), their ``row`` and ``columns``."""
    frame = gather_events(layout, [key, *columns], rows).with_columns(rows.alias("row"))
    return frame.drop_nulls(key).select(pl.col(key).alias("cell"), "row", *columns)


def _positions(layout: Layout, group_by: str, names: list[str]) -> Ints:
    """For each code of ``group_by``, its value's position in ``names`` (0 when absent)."""
    positions = np.zeros(layout.dictionaries.of(group_by).len(), dtype=np.int64)
    known = layout.codes[group_by]
    for position, name in enumerate(names):
        if name in known:
            positions[known[name]] = position
    return positions


def _row_span(rows: pl.Series) -> tuple[int, int] | None:
    """The smallest and the largest of ``rows``; None when there is none."""
    if rows.is_empty():
        return None
    return cast(int, rows.min()), cast(int, rows.max())


def _ends(keyed: pl.Series) -> tuple[int, int] | None:
    """The positions of the first and the last true in ``keyed``; None when none is."""
    if not keyed.any():
        return None
    first, last = keyed.arg_max(), keyed.reverse().arg_max()
    return cast(int, first), keyed.len() - 1 - cast(int, last)


def _time(layout: Layout, row: int) -> datetime:
    return _EPOCH + timedelta(microseconds=layout.times.micros(row))


def _lead_bound(layout: Layout) -> int:
    """One more than the largest lead code (the leads frame has a row per code)."""
    return layout.leads.height


def _mqls(layout: Layout) -> npt.NDArray[np.bool_]:
    """Whether each lead code's lead is an MQL."""
    return layout.leads.get_column("is_mql").fill_null(value=False).to_numpy()


def _marked(codes: pl.Series, bound: int) -> npt.NDArray[np.bool_]:
    """For each code below ``bound``, whether it is among ``codes`` (nulls and
    codes from ``bound`` on aside). Marked chunk by chunk, each read in place."""
    seen = np.zeros(bound + 1, dtype=np.bool_)
    for chunk in codes.fill_null(bound).get_chunks():
        seen[chunk.to_numpy()] = True
    return seen[:bound]


def _filled(codes: pl.Series, bound: int) -> Ints:
    """``codes`` as 64-bit integers, ``bound`` for a null."""
    return codes.fill_null(bound).to_numpy().astype(np.int64)


PACKED_BITS = 63
"""A (cell, code) pair is sorted as one non-negative 64-bit integer when it fits in these bits."""


def _distinct_pairs(cell: Ints, codes: Ints, bound: int) -> tuple[Ints, Ints]:
    """The distinct (cell, code) pairs among those given, but those whose code
    is ``bound`` (a null), sorted by cell.

    Each pair is packed into one 64-bit integer, the code in the low bits, and
    the integers are sorted (a vectorised sort, several times faster than
    hashing them); when cells and codes do not fit together, the cells are
    ranked first (there are no more of them than pairs).
    """
    bits = max(bound.bit_length(), 1)
    ranks = None
    if int(cell.max(initial=0)).bit_length() + bits > PACKED_BITS:
        ranks, inverse = np.unique(cell, return_inverse=True)
        cell = inverse.astype(np.int64)
    packed = (cell << bits) | codes
    packed.sort()
    first = np.ones(packed.size, dtype=np.bool_)
    np.not_equal(packed[1:], packed[:-1], out=first[1:])
    low = np.int64((1 << bits) - 1)
    first &= (packed & low) != bound
    distinct = packed[first]
    cells = distinct >> bits
    return (cells if ranks is None else ranks[cells]), distinct & low


EXACT_FLOATS = 1 << 53
"""Integers below this magnitude are exact as float64, and so is a sum of them
whose partial sums all stay below it."""


def _cell_metrics(layout: Layout, frame: pl.DataFrame, cell: Ints, *, cells: int) -> pl.DataFrame:
    """The metrics (:data:`METRICS`) per cell of the events of ``frame`` (their
    ``lead`` and ``points``) in the cells ``cell`` (below ``cells``): one row
    per cell with events, with the cell as column ``cell``.

    Counts per cell are bincounts; points too when no sum can leave the
    integers that float64 holds exactly (a few points an event: always), else
    a Polars sum. The distinct (cell, lead) and (cell, account) pairs are found
    by :func:`_distinct_pairs`. Money is summed per cell by Polars, as exact
    decimals.
    """
    total_events = np.bincount(cell, minlength=cells)
    points = frame.get_column("points")
    largest = max(abs(cast(int, points.min() or 0)), abs(cast(int, points.max() or 0)))
    if largest * max(points.len(), 1) < EXACT_FLOATS:
        weights = points.to_numpy().astype(np.float64)
        total_points = np.rint(np.bincount(cell, weights=weights, minlength=cells))
    else:
        sums = (
            pl.DataFrame({"cell": cell, "points": points.cast(pl.Int64)})
            .group_by("cell")
            .agg(pl.col("points").sum())
        )
        total_points = np.zeros(cells, dtype=np.int64)
        total_points[sums.get_column("cell").to_numpy()] = sums.get_column("points").to_numpy()
    lead_bound, accounts = _lead_bound(layout), layout.accounts
    lead_cells, leads = _distinct_pairs(
        cell, _filled(frame.get_column("lead"), lead_bound), lead_bound
    )
    # The pairs come sorted by cell: each cell's are one slice of them.
    bounds = np.searchsorted(lead_cells, np.arange(cells + 1))
    unique_leads = np.diff(bounds)
    mqls = np.concatenate([[0], np.cumsum(_mqls(layout)[leads], dtype=np.int64)])
    mql_count = mqls[bounds[1:]] - mqls[bounds[:-1]]
    account_of = _filled(layout.leads.get_column("account"), accounts.height)
    account_cells, reached = _distinct_pairs(lead_cells, account_of[leads], accounts.height)
    deals = (
        pl.DataFrame({"cell": account_cells, "account": reached})
        .with_columns(pl.col("cell").set_sorted())  # the pairs come sorted
        .with_columns(
            pl.lit(accounts.get_column(name)).gather(pl.col("account")).alias(name)
            for name in ("deals_count", *MONEY_SUMS)
        )
        .group_by("cell")
        .agg(
            pl.col("deals_count").sum().cast(pl.Int64),
            *(pl.col(name).sum().cast(MONEY) for name in MONEY_SUMS),
        )
    )
    present = np.flatnonzero(total_events)
    counts = pl.DataFrame(
        {
            "cell": present.astype(np.int64),
            "total_events": total_events[present].astype(np.int64),
            "unique_leads": unique_leads[present].astype(np.int64),
            "mql_count": mql_count[present].astype(np.int64),
            "total_points": total_points[present].astype(np.int64),
        }
    )
    zero = pl.lit(0).cast(MONEY)
    return counts.join(deals, on="cell", how="left", maintain_order="left").with_columns(
        pl.col("deals_count").fill_null(0),
        *(pl.col(name).fill_null(zero) for name in MONEY_SUMS),
    )


def _values(layout: Layout, key: str, lo: int, hi: int) -> int:
    """The number of values of ``key`` with events in rows [lo, hi): read from
    the day totals for the window's whole UTC days, from the events for the rest."""
    days = layout.days[key]
    split = queries.day_split(layout.times, days.get_column("day"), lo, hi)
    start, end = split.days
    parts = [days.get_column(key).slice(start, end - start)]
    parts += [layout.events.get_column(key).slice(a, b - a) for a, b in split.raw]
    bound = layout.dictionaries.of(key).len()
    seen = np.zeros(bound, dtype=np.bool_)
    for part in parts:
        seen |= _marked(part, bound)
    return int(seen.sum())
