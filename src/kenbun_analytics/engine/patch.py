"""An incremental refresh: a layout after some events changed, without rebuilding it.

Every derived structure is patched where the change reaches:

- a changed event's row takes its current version when its time is the same,
  or becomes a *tombstone* (no event id, lead, account or values, so it counts
  nowhere) when it is gone or its time changed;
- new events, and those whose time changed, are inserted where their time
  puts them: at the end for events arriving now, among the last rows for ones
  arriving late. Only the rows from the first insertion on are copied into
  their new places (:class:`Placement`);
- the previous-day columns are recomputed only over the rows of the leads and
  accounts that a changed event had or has: a pair of any other lead or account
  has the same rows as before (and when rows were only appended, only the
  appended rows get new values);
- a value index changes only for the values an event left or joined, after its
  rows from the first insertion on are renumbered;
- the day totals change by the sums of the rows whose contribution changed
  (new minus old), and the cells an event left get their first and last times
  again, from the value index or from the events of their day;
- the times (:class:`kenbun_analytics.engine.times.Times`) only gain the inserted
  rows, a tombstone keeping its old time: they too are rebuilt only from the
  first insertion on.

A layout is derived afresh from its events instead when new per-lead facts
arrive, when a dictionary grows past 256 or 65,536 values or the events come
to span 256 or 65,536 days (a column would widen), or when an event lands on a day
before the first event's (every previous day is counted from that one). The
tombstones go at the next full load or derivation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from kenbun_analytics.engine.codes import (
    NARROW_TYPES,
    code_dtypes,
    code_of,
    encode_events,
    narrowed,
)
from kenbun_analytics.engine.days import compact_days, day_number, day_totals, summable_days
from kenbun_analytics.engine.frames import (
    BASE_EVENTS,
    CODE,
    DAY,
    KEYS,
    NO_PREVIOUS,
    PAIRS,
    previous_day,
)
from kenbun_analytics.engine.index import ValueIndex, indexed
from kenbun_analytics.engine.layout import (
    Layout,
    base_of,
    build,
    derive,
    merge_events,
    with_new_leads,
)
from kenbun_analytics.engine.previous import (
    account_of,
    event_days,
    previous_day_dtype,
    previous_pair_days,
    with_lead_facts,
)
from kenbun_analytics.engine.times import Times, segment_search

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
    leads, details = with_new_leads(layout, dictionaries, new_leads)
    return derive(base, dictionaries, leads, layout.accounts, details=details)


def patch(
    layout: Layout,
    changed_ids: pl.Series,
    arrived: pl.DataFrame,
    new_leads: pl.DataFrame | None = None,
) -> Layout | None:
    """:func:`update` in place, or None when the layout is to be derived afresh
    (see the module)."""
    events, times = layout.events, layout.times
    if not len(times):
        return None
    # Time order: inserted rows go in as they are, and ``rows`` below stays
    # aligned with the encoded events.
    arrived = arrived.sort("occurred_at", "event_id")
    # An id the narrowed column cannot hold is not in it.
    ids = changed_ids.cast(events.schema["event_id"], strict=False).drop_nulls()
    changed = events.get_column("event_id").is_in(ids.implode()).arg_true()
    old = (
        events.select(pl.col("event_id").cast(BASE_EVENTS["event_id"]))
        .gather(changed)
        .with_columns(times.gather(changed), row=changed)
    )
    rows = (
        arrived.select("event_id", "occurred_at")
        .join(old, on=["event_id", "occurred_at"], how="left", maintain_order="left")
        .get_column("row")
    )
    inserted_at = arrived.get_column("occurred_at").filter(rows.is_null()).to_physical()
    if inserted_at.len() and int(inserted_at[0]) // DAY < times.micros(0) // DAY:
        return None  # decided before encoding anything: update() derives afresh
    current, dictionaries = encode_events(arrived, layout.dictionaries)
    if code_dtypes(dictionaries) != events.select(KEYS).schema or any(
        indexed(dictionaries.of(key).len()) != (key in layout.indexes) for key in KEYS
    ):
        return None  # a dictionary outgrew its codes' width: update() derives afresh
    leads, details = with_new_leads(layout, dictionaries, new_leads)
    placed = with_lead_facts(current, leads).with_columns(rows)
    inserted = placed.filter(pl.col("row").is_null()).drop("row")
    placement = Placement.of(times, inserted.get_column("occurred_at"))
    # Moved and deleted rows keep their times (as tombstones): times only gain rows.
    patched_times = times.inserted(placement.at, inserted.get_column("occurred_at"))
    # Each changed row in row order: its current version, or a tombstone.
    replaced = (
        old.select("row")
        .join(placed.drop("occurred_at"), on="row", how="left", maintain_order="left")
        .with_columns(pl.col("points").fill_null(0), pl.col("is_mql").fill_null(value=False))
    )
    changed_rows = placement.moved(changed)
    columns = {}
    for name in FACT_COLUMNS:
        column = events.get_column(name)
        if name in NARROW_TYPES and not _fits(
            pl.concat([replaced.get_column(name), inserted.get_column(name)]), column.dtype
        ):
            column = column.cast(BASE_EVENTS[name])  # widened for the change
        spread = placement.column(column, inserted.get_column(name))
        columns[name] = _scattered(
            spread, changed_rows, replaced.get_column(name), copy=spread is column
        )
    for name in NARROW_TYPES:  # as narrow as a fresh derive makes them
        columns[name] = narrowed(columns[name])
    patched = pl.DataFrame(columns).select(FACT_COLUMNS)
    if previous_day_dtype(patched_times) != events.schema[previous_day(*PAIRS[0])]:
        return None  # the days outgrew their width: update() derives afresh
    patched, moved = _patched_pairs(
        events,
        patched,
        changed,
        changed_rows,
        placement=placement,
        leads=leads,
        times=patched_times,
    )
    indexes = {}
    days = {}
    for key in KEYS:
        left, joined = _moves(events, patched, changed, changed_rows, placement=placement, key=key)
        index = layout.indexes.get(key)
        if index is not None:
            index = indexes[key] = _patched_index(
                placement.shifted(index), dictionaries.of(key).len(), left, joined
            )
        touched = pl.concat([changed_rows, placement.rows, moved[key]]).unique().sort()
        was = placement.old(touched)[1]
        # The day totals need each event's account (account_of): these few rows get it.
        days[key] = _patched_days(
            layout.days[key],
            events.gather(was).with_columns(times.gather(was), account_of(leads)),
            patched.gather(touched).with_columns(patched_times.gather(touched), account_of(leads)),
            accounts=layout.accounts,
            key=key,
            left=_left_cells(patched_times, left, key),
            events=patched,
            times=patched_times,
            index=index,
        )
    return Layout(
        events=patched,
        times=patched_times,
        leads=leads,
        details=details,
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


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the inserted rows go among a layout's ``height`` rows: before the
    old row ``at[i]`` (``height``: after the last), for each inserted row ``i``
    in time order, so ``at`` ascends. An inserted row goes after the old rows of
    its own instant."""

    height: int
    at: npt.NDArray[np.int64]

    @classmethod
    def of(cls, times: Times, inserted: pl.Series) -> Placement:
        """The places of rows at ``inserted`` times (ascending) among ``times``."""
        return cls(len(times), times.searches(inserted.to_physical(), side="right"))

    @property
    def first(self) -> int:
        """The first old row that moves: every row before it keeps its number."""
        return int(self.at[0]) if len(self.at) else self.height

    @property
    def appends(self) -> bool:
        """Whether no old row moves: every inserted row (if any) goes after the last."""
        return self.first >= self.height

    @property
    def rows(self) -> pl.Series:
        """The row numbers of the inserted rows, in the patched layout."""
        return pl.Series("row", self.at + np.arange(len(self.at)), dtype=pl.UInt32)

    def moved(self, rows: pl.Series) -> pl.Series:
        """The numbers in the patched layout of old ``rows``."""
        if self.appends:
            return rows
        old = rows.to_numpy().astype(np.int64)
        return pl.Series(
            rows.name, old + np.searchsorted(self.at, old, side="right"), dtype=rows.dtype
        )

    def old(self, rows: pl.Series) -> tuple[pl.Series, pl.Series]:
        """Which of ``rows`` (ascending, of the patched layout) were old rows,
        and the numbers those had before."""
        if self.appends:
            old = rows < self.height
            return old, rows.filter(old)
        inserted = self.rows.to_numpy().astype(np.int64)
        new = rows.to_numpy().astype(np.int64)
        before = np.searchsorted(inserted, new, side="left")
        kept = ~np.isin(new, inserted)
        return pl.Series(kept), pl.Series(rows.name, (new - before)[kept], dtype=rows.dtype)

    def column(self, column: pl.Series, inserted: pl.Series) -> pl.Series:
        """``column`` with the ``inserted`` values in their places. Only the rows
        from :attr:`first` on are moved."""
        if not len(self.at):
            return column
        first = self.first
        tail = self.height - first
        order = np.empty(tail + len(self.at), dtype=np.int64)
        places = self.at - first + np.arange(len(self.at))
        kept = np.ones(len(order), dtype=bool)
        kept[places] = False
        order[kept] = np.arange(tail)
        order[places] = tail + np.arange(len(self.at))
        moved = pl.concat([column.slice(first), inserted.cast(column.dtype)]).gather(order)
        return pl.concat([column.slice(0, first), moved], rechunk=True)

    def shifted(self, index: ValueIndex) -> ValueIndex:
        """``index`` with its rows renumbered for the patched layout."""
        if self.appends:
            return index
        rows = index.rows.to_numpy()
        moving = np.flatnonzero(rows >= self.first)
        renumbered = rows.copy()
        renumbered[moving] += np.searchsorted(self.at, rows[moving], side="right").astype(
            rows.dtype
        )
        return ValueIndex(pl.Series(index.rows.name, renumbered), index.offsets)


def _fits(values: pl.Series, dtype: pl.DataType) -> bool:
    """Whether every one of ``values`` is held by ``dtype``."""
    return values.cast(dtype, strict=False).null_count() == values.null_count()


def _scattered(
    column: pl.Series, rows: pl.Series, values: pl.Series, *, copy: bool = True
) -> pl.Series:
    """``column`` with ``values`` at ``rows``; the same series when nothing differs.
    Without ``copy``, ``column`` is this patch's own and is changed in place."""
    if column.gather(rows).equals(values.cast(column.dtype), check_names=False):
        return column
    if copy:
        column = column.clone()  # copy on write: the serving layout keeps its column
    column.scatter(rows, values.cast(column.dtype))
    return column


def _patched_pairs(
    events: pl.DataFrame,
    patched: pl.DataFrame,
    changed: pl.Series,
    changed_rows: pl.Series,
    *,
    placement: Placement,
    leads: pl.DataFrame,
    times: Times,
) -> tuple[pl.DataFrame, dict[str, pl.Series]]:
    """``patched`` (at ``times``) with its previous-day columns, and per UTM key
    the old rows (numbered as in ``patched``, as ``changed_rows`` number the
    ``changed`` ones) whose first-of-pair flag (no previous event) changed.

    A (key, lead) chain changes only where a changed row got another value of
    the key or another lead (a tombstone has neither), or where rows were
    inserted. Only the rows of the leads such a row had or has are recomputed;
    a pair of any other lead has the same rows as before. Likewise for accounts,
    whose rows are those of their leads: an event's account is read from its
    lead (``leads``) for the few rows that need it, never for all.
    """
    columns: dict[str, pl.Series] = {}
    flipped: dict[str, list[pl.Series]] = {key: [] for key in KEYS}
    account = account_of(leads)
    before = events.select(*KEYS, "lead").gather(changed).with_columns(account)
    after = patched.select(*KEYS, "lead").gather(changed_rows).with_columns(account)
    added = patched.select("lead").gather(placement.rows).with_columns(account)
    differs = {
        name: before.get_column(name).ne_missing(after.get_column(name))
        for name in (*KEYS, "lead", "account")
    }
    plans: dict[str, tuple[list[str], pl.Series, pl.Series]] = {}
    for other in ("lead", "account"):
        regrouped = {key: differs[key] | differs[other] for key in KEYS}
        moving = [key for key in KEYS if added.height or regrouped[key].any()]
        if not moving:
            continue
        moves = pl.select(pl.any_horizontal(regrouped[key] for key in moving)).to_series()
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
        plans[other] = (moving, changed_rows.filter(moves), touched)
    # One pass over the events finds the rows of the leads of both.
    candidates = (
        patched.get_column("lead")
        .is_in(pl.concat([touched for *_, touched in plans.values()]).implode())
        .arg_true()
        if plans
        else changed.clear()
    )
    for other, (moving, moved, touched) in plans.items():
        rows = candidates
        if len(plans) > 1:
            of_lead = patched.get_column("lead").gather(candidates).is_in(touched.implode())
            rows = candidates.filter(of_lead)
        rows = pl.concat([rows, moved]).unique().sort()
        subset = patched.select(*moving, "lead").gather(rows).with_columns(account)
        # The rows are ascending: a cheap gather of times. The six previous-day
        # columns share one type.
        days_of_rows = event_days(
            times.gather(rows), first=times.micros(0), dtype=events.schema[previous_day(*PAIRS[0])]
        )
        old, was = placement.old(rows)
        # When rows were only appended and no old row changed its pair, every
        # old row keeps its previous event: only the appended rows need theirs.
        appended_only = placement.appends and moved.is_empty()
        for key in moving:
            name = previous_day(key, other)
            column = events.get_column(name)
            days = previous_pair_days(subset, key, other, days_of_rows)
            spread = placement.column(
                column, pl.repeat(NO_PREVIOUS, added.height, dtype=column.dtype, eager=True)
            )
            if appended_only:
                appended = ~old
                columns[name] = _scattered(
                    spread, rows.filter(appended), days.filter(appended), copy=spread is column
                )
                continue
            columns[name] = _scattered(spread, rows, days, copy=spread is column)
            first_before = column.gather(was) == NO_PREVIOUS
            first_now = days.filter(old) == NO_PREVIOUS
            flipped[key].append(rows.filter(old).filter(first_before != first_now))
    patched = patched.with_columns(
        columns.get(name, events.get_column(name)).alias(name)
        for name in (previous_day(key, other) for key, other in PAIRS)
    )
    return patched, {key: pl.concat([changed.clear(), *rows]) for key, rows in flipped.items()}


def _moves(
    events: pl.DataFrame,
    patched: pl.DataFrame,
    changed: pl.Series,
    changed_rows: pl.Series,
    *,
    placement: Placement,
    key: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The (code, row) entries that left ``key``'s values and those that joined,
    with rows numbered as in ``patched`` (``changed_rows`` are the ``changed``
    rows there)."""
    before = events.get_column(key).gather(changed)
    after = patched.get_column(key).gather(changed_rows)
    differs = before.ne_missing(after)
    left = pl.DataFrame({"code": before, "row": changed_rows}).filter(differs).drop_nulls()
    joined = pl.concat(
        [
            pl.DataFrame({"code": after, "row": changed_rows}).filter(differs),
            pl.DataFrame(
                {"code": patched.get_column(key).gather(placement.rows), "row": placement.rows}
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
    leaving = np.sort(segment_search(rows, old[left_codes], old[left_codes + 1], left_rows))
    order = np.lexsort((joined_rows, joined_codes))
    joined_codes, joined_rows = joined_codes[order], joined_rows[order]
    at = segment_search(rows, old[joined_codes], old[joined_codes + 1], joined_rows)
    # Each of these copies every row once: skipped when it has nothing to do
    # (events only arriving, or only leaving).
    kept = np.delete(rows, leaving) if len(leaving) else rows
    patched = np.insert(kept, at - np.searchsorted(leaving, at), joined_rows) if len(at) else kept
    change = np.bincount(joined_codes, minlength=names) - np.bincount(left_codes, minlength=names)
    offsets = old + np.concatenate(([0], np.cumsum(change)))
    return ValueIndex(
        rows=pl.Series(index.rows.name, patched, dtype=index.rows.dtype),
        offsets=pl.Series(index.offsets.name, offsets, dtype=index.offsets.dtype),
    )


def _left_cells(times: Times, left: pl.DataFrame, key: str) -> pl.DataFrame:
    """The (day, code) cells that some event left."""
    return (
        left.with_columns(times.gather(left.get_column("row")))
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
    times: Times,
    index: ValueIndex | None,
) -> pl.DataFrame:
    """Day totals plus the sums of the rows ``after`` minus those of the same rows
    ``before``. The first and last times of a cell can only grow by the rows
    ``after``, except in the cells an event ``left``: those are read again from
    ``events`` (the patched ones, at ``times``), through ``index`` when the key
    has one. The totals are summed in the types of :func:`summable_days` and held
    narrow again (:func:`compact_days`), as narrow as a fresh derive makes them."""
    held = totals
    totals = summable_days(totals)

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

    removed = summable_days(day_totals(before, accounts, key))
    added = summable_days(day_totals(after, accounts, key))
    # Subtracted from zero: Polars has no negation of 128-bit integers.
    change = summed(
        [added, removed.with_columns((0 - pl.col(name)).alias(name) for name in SUMS)]
    ).filter(pl.any_horizontal(pl.col(name) != 0 for name in SUMS))
    # A cell whose sums did not change and that no event left is as it was: no
    # event joined it either (that would have added one to its events).
    cell = (pl.col("day").cast(pl.Int64) * (1 << 32) + pl.col(key).cast(pl.Int64)).alias("cell")
    cells = pl.concat([change.select(cell), left.select(cell)]).unique().get_column("cell")
    if not cells.len():
        return held
    # The totals are sorted by day and code, as ``cell`` is: only the rows from
    # the first touched day on are rewritten (a few when events arrive now).
    first_day = int(cells.min()) >> 32  # type: ignore[arg-type]
    start = int(totals.get_column("day").search_sorted(first_day, side="left"))
    keyed = totals.slice(start).with_columns(cell)
    touched = keyed.filter(pl.col("cell").is_in(cells.implode()))
    recomputed = summed([touched.drop("cell"), change.select(totals.columns)]).filter(
        pl.col("total_events") > 0
    )
    bounds = _cell_bounds(
        recomputed.join(left, on=["day", key], how="semi"), key, events, times, index
    )
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
    rewritten = (
        keyed.filter(~pl.col("cell").is_in(cells.implode()))
        .merge_sorted(recomputed, key="cell")
        .drop("cell")
    )
    return compact_days(pl.concat([totals.slice(0, start), rewritten], rechunk=True))


def _cell_bounds(
    cells: pl.DataFrame,
    key: str,
    events: pl.DataFrame,
    times: Times,
    index: ValueIndex | None,
) -> pl.DataFrame:
    """The first and last event time of each (day, code) cell (every cell here
    holds events): from the code's rows in ``index``, or without one by
    scanning the events of the cells' days."""
    if index is None:
        days = cells.get_column("day").unique().cast(pl.Int64)
        starts = times.searches(days * DAY, side="left")
        ends = times.searches((days + 1) * DAY, side="left")
        scanned = (
            pl.select(pl.int_ranges(pl.Series(starts), pl.Series(ends), dtype=pl.UInt32))
            .to_series()
            .explode()
        )
        return (
            events.select(key)
            .gather(scanned)
            .with_columns(times.gather(scanned))
            .with_columns(day_number())
            .join(cells.select("day", key), on=["day", key], how="semi")
            .group_by("day", key)
            .agg(
                pl.col("occurred_at").min().alias("first_event_at"),
                pl.col("occurred_at").max().alias("last_event_at"),
            )
        )
    days = cells.get_column("day").cast(pl.Int64)
    day_starts = times.searches(days * DAY, side="left")
    day_ends = times.searches((days + 1) * DAY, side="left")
    codes = cells.get_column(key).to_numpy()
    offsets, rows = index.offsets.to_numpy(), index.rows.to_numpy()
    first = segment_search(rows, offsets[codes], offsets[codes + 1], day_starts)
    end = segment_search(rows, offsets[codes], offsets[codes + 1], day_ends)
    return cells.select("day", key).with_columns(
        times.gather(pl.Series(rows[first])).alias("first_event_at"),
        times.gather(pl.Series(rows[end - 1])).alias("last_event_at"),
    )
