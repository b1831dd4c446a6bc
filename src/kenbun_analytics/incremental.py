"""An incremental refresh: a layout after some events changed, without rebuilding it.

When the changed events keep their times and the new ones come after the last
event (the common case: metadata edits, deletes, new events arriving now), no
row moves. Then every derived structure is patched where the change reaches:

- a changed event's row takes its current version, or becomes a *tombstone*
  (no event id, lead, account or values, so it counts nowhere) when it is gone;
  new events are appended;
- the previous-day columns are recomputed only over the rows of the leads and
  accounts that a changed event had or has: a pair of any other lead or account
  has the same rows as before;
- a value index changes only for the values an event left or joined;
- the day totals change by the sums of the rows whose contribution changed
  (new minus old), and the cells an event left get their first and last times
  again, from the value index or from the events of their day.

Otherwise (a changed time, an event arriving before the last one, new per-lead
facts) rows would shift, or (a dictionary growing past 256 or 65,536 values,
events spanning 65,536 days) a column would widen, and the layout is derived
afresh from its events. The
tombstones go at the next full load or shifting update.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from kenbun_analytics.layout import (
    BASE_EVENTS,
    CODE,
    DAY,
    KEYS,
    NARROW_TYPES,
    NO_PREVIOUS,
    PAIRS,
    ROW,
    Layout,
    ValueIndex,
    _previous_of_pair,
    account_of,
    base_of,
    build,
    code_dtypes,
    code_of,
    day_number,
    day_totals,
    derive,
    encode_events,
    indexed,
    merge_events,
    narrowed,
    previous_day,
    previous_day_dtype,
    previous_days,
    with_lead_facts,
    with_new_leads,
)

FACT_COLUMNS = (*(name for name in BASE_EVENTS.names() if name != "occurred_at"), "is_mql")
"""The event columns a change can set; a row's time never changes in place."""
SUMS = (
    "total_events",
    "total_points",
    "new_leads",
    "new_mqls",
    "deals_count",
    "pipeline_value",
    "closed_won_value",
)


def update(
    layout: Layout,
    changed_ids: pl.Series,
    arrived: pl.DataFrame,
    facts: tuple[pl.DataFrame, pl.DataFrame] | None = None,
    new_leads: pl.DataFrame | None = None,
) -> Layout:
    """``layout`` after the events ``changed_ids`` changed; ``arrived`` (raw events,
    in any order) are the current versions of those still counting here.

    With new ``facts`` (per-lead facts, per-account deal totals) everything is
    derived again; without, the lead and account frames are kept, with empty
    rows for the leads first seen in ``arrived`` (holding their facts from
    ``new_leads`` when it has them), and the layout is patched when no row has
    to move.
    """
    if facts is None:
        if not changed_ids.len():
            return layout
        patched = patch(layout, changed_ids, arrived, new_leads)
        if patched is not None:
            return patched
    base, dictionaries = base_of(layout), layout.dictionaries
    if changed_ids.len():
        current, dictionaries = encode_events(arrived, dictionaries)
        base = merge_events(base, changed_ids, current)
    if facts is not None:
        return build(base, dictionaries, *facts)
    leads = with_new_leads(layout.leads, layout.accounts, dictionaries, new_leads)
    return derive(base, dictionaries, leads, layout.accounts)


def patch(
    layout: Layout,
    changed_ids: pl.Series,
    arrived: pl.DataFrame,
    new_leads: pl.DataFrame | None = None,
) -> Layout | None:
    """:func:`update` in place, or None when a row would have to move (see the module)."""
    events = layout.events
    height = events.height
    if height == 0:
        return None
    # Time order: appended rows go at the end as they are, and ``rows`` below
    # stays aligned with the encoded events.
    arrived = arrived.sort("occurred_at", "event_id")
    # An id the narrowed column cannot hold is not in it.
    ids = changed_ids.cast(events.schema["event_id"], strict=False).drop_nulls()
    changed = events.get_column("event_id").is_in(ids.implode()).arg_true()
    old = (
        events.select(pl.col("event_id").cast(BASE_EVENTS["event_id"]), "occurred_at")
        .gather(changed)
        .with_columns(row=changed)
    )
    rows = (
        arrived.select("event_id", "occurred_at")
        .join(old, on=["event_id", "occurred_at"], how="left", maintain_order="left")
        .get_column("row")
    )
    later = arrived.get_column("occurred_at").filter(rows.is_null())
    if later.len() and later.min() < events["occurred_at"][-1]:
        return None  # decided before encoding anything: update() derives afresh
    current, dictionaries = encode_events(arrived, layout.dictionaries)
    if code_dtypes(dictionaries) != events.select(KEYS).schema or any(
        indexed(dictionaries.of(key).len()) != (key in layout.indexes) for key in KEYS
    ):
        return None  # a dictionary outgrew its codes' width: update() derives afresh
    leads = with_new_leads(layout.leads, layout.accounts, dictionaries, new_leads)
    placed = with_lead_facts(current, leads).with_columns(rows)
    appended = placed.filter(pl.col("row").is_null()).drop("row")
    # Each changed row in row order: its current version, or a tombstone.
    replaced = (
        old.select("row")
        .join(placed.drop("occurred_at"), on="row", how="left", maintain_order="left")
        .with_columns(pl.col("points").fill_null(0), pl.col("is_mql").fill_null(value=False))
    )
    columns = {"occurred_at": _appended(events.get_column("occurred_at"), appended)}
    for name in FACT_COLUMNS:
        column = events.get_column(name)
        if name in NARROW_TYPES and not _fits(
            pl.concat([replaced.get_column(name), appended.get_column(name)]), column.dtype
        ):
            column = column.cast(BASE_EVENTS[name])  # widened for the change
        columns[name] = _appended(_scattered(column, changed, replaced.get_column(name)), appended)
    for name in NARROW_TYPES:  # as narrow as a fresh derive makes them
        columns[name] = narrowed(columns[name])
    patched = pl.DataFrame(columns).select(*BASE_EVENTS.names(), "is_mql")
    if (
        previous_day_dtype(patched.get_column("occurred_at"))
        != events.schema[previous_day(*PAIRS[0])]
    ):
        return None  # the days outgrew their width: update() derives afresh
    patched, moved = _patched_pairs(events, patched, changed, leads)
    appended_rows = pl.int_range(height, patched.height, dtype=pl.UInt32, eager=True)
    indexes = {}
    days = {}
    for key in KEYS:
        left, joined = _moves(events, patched, changed, appended_rows, key)
        index = layout.indexes.get(key)
        if index is not None:
            index = indexes[key] = _patched_index(index, dictionaries.of(key).len(), left, joined)
        touched = pl.concat([changed, appended_rows, moved[key]]).unique().sort()
        # The day totals need each event's account (account_of): these few rows get it.
        days[key] = _patched_days(
            layout.days[key],
            events.gather(touched.filter(touched < height)).with_columns(account_of(leads)),
            patched.gather(touched).with_columns(account_of(leads)),
            accounts=layout.accounts,
            key=key,
            left=_left_cells(events, left, key),
            events=patched,
            index=index,
        )
    return Layout(
        events=patched,
        leads=leads,
        accounts=layout.accounts,
        dictionaries=dictionaries,
        indexes=indexes,
        days=days,
        codes={
            key: layout.codes[key]
            if dictionaries.of(key).len() == len(layout.codes[key])
            else code_of(dictionaries.of(key))
            for key in KEYS
        },
    )


def _fits(values: pl.Series, dtype: pl.DataType) -> bool:
    """Whether every one of ``values`` is held by ``dtype``."""
    return values.cast(dtype, strict=False).null_count() == values.null_count()


def _scattered(column: pl.Series, rows: pl.Series, values: pl.Series) -> pl.Series:
    """``column`` with ``values`` at ``rows``; the same series when nothing differs."""
    if column.gather(rows).equals(values.cast(column.dtype), check_names=False):
        return column
    column = column.clone()  # copy on write: the serving layout keeps its column
    column.scatter(rows, values.cast(column.dtype))
    return column


def _appended(column: pl.Series, appended: pl.DataFrame) -> pl.Series:
    if not appended.height:
        return column
    return pl.concat([column, appended.get_column(column.name).cast(column.dtype)], rechunk=True)


def _patched_pairs(
    events: pl.DataFrame, patched: pl.DataFrame, changed: pl.Series, leads: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, pl.Series]]:
    """``patched`` with its previous-day columns, and per UTM key the old rows
    whose first-of-pair flag (no previous event) changed.

    A (key, lead) chain changes only where a changed row got another value of
    the key or another lead (a tombstone has neither), or where rows were
    appended. Only the rows of the leads such a row had or has are recomputed;
    a pair of any other lead has the same rows as before. Likewise for accounts,
    whose rows are those of their leads: an event's account is read from its
    lead (``leads``) for the few rows that need it, never for all.
    """
    height = events.height
    columns: dict[str, pl.Series] = {}
    flipped: dict[str, list[pl.Series]] = {key: [] for key in KEYS}
    account = account_of(leads)
    before, after = (
        frame.select(*KEYS, "lead").gather(changed).with_columns(account)
        for frame in (events, patched)
    )
    added = patched.select("lead").slice(height).with_columns(account)
    differs = {
        name: before.get_column(name).ne_missing(after.get_column(name))
        for name in (*KEYS, "lead", "account")
    }
    for other in ("lead", "account"):
        regrouped = {key: differs[key] | differs[other] for key in KEYS}
        moving = [key for key in KEYS if patched.height > height or regrouped[key].any()]
        if not moving:
            continue
        moves = pl.select(pl.any_horizontal(regrouped[key] for key in moving)).to_series()
        moved = changed.filter(moves)
        touched = pl.concat(
            [
                before.get_column(other).filter(moves),
                after.get_column(other).filter(moves),
                added.get_column(other),
            ]
        ).drop_nulls()
        if other == "account":  # the rows of an account are those of its leads
            touched = (
                leads.select(pl.int_range(pl.len(), dtype=CODE).alias("lead"), "account")
                .filter(pl.col("account").is_in(touched.implode()))
                .get_column("lead")
            )
        mark = pl.repeat(value=False, n=patched.height, eager=True)
        mark.scatter(moved, values=True)
        rows = (patched.get_column("lead").is_in(touched.implode()) | mark).arg_true()
        subset = patched.select(*moving, "lead").gather(rows).with_columns(account)
        old_rows = rows.filter(rows < height)
        for key in moving:
            name = previous_day(key, other)
            local = _previous_of_pair(subset, key, other)
            previous = pl.select(
                pl.when(local >= 0)
                .then(pl.lit(rows.cast(ROW)).gather(local.clip(0)))
                .otherwise(pl.lit(-1, dtype=ROW))
            ).to_series()
            column = events.get_column(name)
            columns[name] = _scattered(
                _extended(column, patched.height),
                rows,
                previous_days(previous, patched.get_column("occurred_at"), column.dtype),
            )
            was = column.gather(old_rows) == NO_PREVIOUS
            now = columns[name].gather(old_rows) == NO_PREVIOUS
            flipped[key].append(old_rows.filter(was != now))
    patched = patched.with_columns(
        columns.get(name, events.get_column(name)).alias(name)
        for name in (previous_day(key, other) for key, other in PAIRS)
    )
    return patched, {key: pl.concat([changed.clear(), *rows]) for key, rows in flipped.items()}


def _extended(column: pl.Series, height: int) -> pl.Series:
    """A previous-day column extended with :data:`NO_PREVIOUS` to ``height`` rows."""
    if column.len() == height:
        return column
    return pl.concat(
        [column, pl.repeat(NO_PREVIOUS, height - column.len(), dtype=column.dtype, eager=True)],
        rechunk=True,
    )


def _moves(
    events: pl.DataFrame,
    patched: pl.DataFrame,
    changed: pl.Series,
    appended_rows: pl.Series,
    key: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The (code, row) entries that left ``key``'s values and those that joined."""
    before = events.get_column(key).gather(changed)
    after = patched.get_column(key).gather(changed)
    differs = before.ne_missing(after)
    left = pl.DataFrame({"code": before, "row": changed}).filter(differs).drop_nulls()
    joined = pl.concat(
        [
            pl.DataFrame({"code": after, "row": changed}).filter(differs),
            pl.DataFrame(
                {"code": patched.get_column(key).slice(events.height), "row": appended_rows}
            ),
        ]
    ).drop_nulls()
    return left, joined


def _patched_index(
    index: ValueIndex, names: int, left: pl.DataFrame, joined: pl.DataFrame
) -> ValueIndex:
    """``index`` with the ``left`` entries gone and the ``joined`` ones in place.

    Each value's rows stay ascending: the entries are found by a binary search
    inside their value's rows, all entries at once, and the rows are copied once.
    """
    old = np.zeros(names + 1, dtype=np.int64)
    old[: index.offsets.len()] = index.offsets.to_numpy()
    old[index.offsets.len() :] = old[index.offsets.len() - 1]
    if not left.height and not joined.height:
        return (
            ValueIndex(index.rows, pl.Series(index.offsets.name, old))
            if names + 1 > index.offsets.len()
            else index
        )
    rows = index.rows.to_numpy()
    left_codes, joined_codes = (
        left.get_column("code").to_numpy(),
        joined.get_column("code").to_numpy(),
    )
    left_rows, joined_rows = left.get_column("row").to_numpy(), joined.get_column("row").to_numpy()
    leaving = np.sort(_segment_search(rows, old[left_codes], old[left_codes + 1], left_rows))
    order = np.lexsort((joined_rows, joined_codes))
    joined_codes, joined_rows = joined_codes[order], joined_rows[order]
    at = _segment_search(rows, old[joined_codes], old[joined_codes + 1], joined_rows)
    kept = np.delete(rows, leaving)
    patched = np.insert(kept, at - np.searchsorted(leaving, at), joined_rows)
    change = np.bincount(joined_codes, minlength=names) - np.bincount(left_codes, minlength=names)
    offsets = old + np.concatenate(([0], np.cumsum(change)))
    return ValueIndex(
        rows=pl.Series(index.rows.name, patched, dtype=index.rows.dtype),
        offsets=pl.Series(index.offsets.name, offsets, dtype=index.offsets.dtype),
    )


def _segment_search(
    values: npt.NDArray[Any],
    starts: npt.NDArray[Any],
    ends: npt.NDArray[Any],
    targets: npt.NDArray[Any],
) -> npt.NDArray[np.int64]:
    """For each i, the first position p in [starts[i], ends[i]) with
    ``values[p] >= targets[i]`` (``ends[i]`` when none), where each such range of
    ``values`` is ascending: one vectorized binary search over all of them."""
    low = starts.astype(np.int64)
    high = ends.astype(np.int64)
    while True:
        open_ = low < high
        if not open_.any():
            return low
        middle = (low + high) // 2
        below = open_ & (values[np.minimum(middle, len(values) - 1)] < targets)
        low = np.where(below, middle + 1, low)
        high = np.where(open_ & ~below, middle, high)


def _left_cells(events: pl.DataFrame, left: pl.DataFrame, key: str) -> pl.DataFrame:
    """The (day, code) cells that some event left."""
    return (
        left.with_columns(pl.lit(events.get_column("occurred_at")).gather(pl.col("row")))
        .select(day_number(), pl.col("code").alias(key))
        .unique()
    )


def _patched_days(
    totals: pl.DataFrame,
    before: pl.DataFrame,
    after: pl.DataFrame,
    *,
    accounts: pl.DataFrame,
    key: str,
    left: pl.DataFrame,
    events: pl.DataFrame,
    index: ValueIndex | None,
) -> pl.DataFrame:
    """Day totals plus the sums of the rows ``after`` minus those of the same rows
    ``before``. The first and last times of a cell can only grow by the rows
    ``after``, except in the cells an event ``left``: those are read again from
    ``events`` (the patched ones), through ``index`` when the key has one."""

    def summed(frames: list[pl.DataFrame]) -> pl.DataFrame:
        return (
            pl.concat(frames)
            .group_by("day", key)
            .agg(
                *(pl.col(name).sum().cast(totals.schema[name]) for name in SUMS),
                pl.col("first_event_at").min(),
                pl.col("last_event_at").max(),
            )
        )

    removed = day_totals(before, accounts, key)
    change = summed(
        [day_totals(after, accounts, key), removed.with_columns(-pl.col(name) for name in SUMS)]
    ).filter(pl.any_horizontal(pl.col(name) != 0 for name in SUMS))
    # A cell whose sums did not change and that no event left is as it was: no
    # event joined it either (that would have added one to its events).
    cell = (pl.col("day").cast(pl.Int64) * (1 << 32) + pl.col(key).cast(pl.Int64)).alias("cell")
    cells = pl.concat([change.select(cell), left.select(cell)]).unique().get_column("cell")
    if not cells.len():
        return totals
    keyed = totals.with_columns(cell)
    touched = keyed.filter(pl.col("cell").is_in(cells.implode()))
    recomputed = summed([touched.drop("cell"), change.select(totals.columns)]).filter(
        pl.col("total_events") > 0
    )
    bounds = _cell_bounds(recomputed.join(left, on=["day", key], how="semi"), key, events, index)
    recomputed = (
        recomputed.join(bounds, on=["day", key], how="left", suffix="_again")
        .with_columns(
            pl.coalesce("first_event_at_again", "first_event_at").alias("first_event_at"),
            pl.coalesce("last_event_at_again", "last_event_at").alias("last_event_at"),
        )
        .select(totals.columns)
        .with_columns(cell)
        .sort("cell")
    )
    return (
        keyed.filter(~pl.col("cell").is_in(cells.implode()))
        .merge_sorted(recomputed, key="cell")
        .drop("cell")
    )


def _cell_bounds(
    cells: pl.DataFrame, key: str, events: pl.DataFrame, index: ValueIndex | None
) -> pl.DataFrame:
    """The first and last event time of each (day, code) cell (every cell here
    holds events): from the code's rows in ``index``, or without one by
    scanning the events of the cells' days."""
    occurred_at = events.get_column("occurred_at")
    micros = occurred_at.to_physical()
    if index is None:
        days = cells.get_column("day").unique().cast(pl.Int64)
        starts = micros.search_sorted(days * DAY, side="left")
        ends = micros.search_sorted((days + 1) * DAY, side="left")
        scanned = pl.select(pl.int_ranges(starts, ends, dtype=pl.UInt32)).to_series().explode()
        return (
            events.select(key, "occurred_at")
            .gather(scanned)
            .with_columns(day_number())
            .join(cells.select("day", key), on=["day", key], how="semi")
            .group_by("day", key)
            .agg(
                pl.col("occurred_at").min().alias("first_event_at"),
                pl.col("occurred_at").max().alias("last_event_at"),
            )
        )
    days = cells.get_column("day").cast(pl.Int64)
    day_starts = micros.search_sorted(days * DAY, side="left").to_numpy()
    day_ends = micros.search_sorted((days + 1) * DAY, side="left").to_numpy()
    codes = cells.get_column(key).to_numpy()
    offsets, rows = index.offsets.to_numpy(), index.rows.to_numpy()
    first = _segment_search(rows, offsets[codes], offsets[codes + 1], day_starts)
    end = _segment_search(rows, offsets[codes], offsets[codes + 1], day_ends)
    return cells.select("day", key).with_columns(
        occurred_at.gather(rows[first]).alias("first_event_at"),
        occurred_at.gather(rows[end - 1]).alias("last_event_at"),
    )
