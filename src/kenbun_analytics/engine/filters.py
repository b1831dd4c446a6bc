"""Filters on UTM values, and the events of a window that pass them.

A filter names, per UTM key, the values an event's value of that key must be
one of (exactly: no trimming, no case folding). Every filtered key must match;
a key without values filters nothing. The events are found by their codes: a
value missing from a key's dictionary has no events, so it matches nothing.

Rows are positions in the time-sorted events of
:class:`kenbun_analytics.engine.layout.Layout` (UInt32, ascending), as
:meth:`~kenbun_analytics.engine.layout.Layout.rows_of` gives them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import polars as pl

from kenbun_analytics.engine.frames import KEYS
from kenbun_analytics.engine.layout import Layout

ROWS = pl.UInt32()
"""The type of row numbers, as the value indexes hold them."""

INDEX_SHARE = 4
"""A filtered key's value index is read instead of scanning the window's codes
when its rows in the window are at most 1/INDEX_SHARE of the window's:
gathering a row costs several times more than comparing a code."""


@dataclass(frozen=True, slots=True)
class Filters:
    """Per UTM key (``campaign``, ``source``, ``medium``), the values an event
    must have; an empty set filters nothing on that key.

    Build one with :meth:`of`, which drops empty values (an empty parameter is
    no filter) and repeats.
    """

    campaign: frozenset[str] = frozenset()
    source: frozenset[str] = frozenset()
    medium: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        campaign: Iterable[str] = (),
        source: Iterable[str] = (),
        medium: Iterable[str] = (),
    ) -> Filters:
        """The filters of the given values per key, empty values ignored."""

        def kept(values: Iterable[str]) -> frozenset[str]:
            return frozenset(value for value in values if value)

        return cls(campaign=kept(campaign), source=kept(source), medium=kept(medium))

    def values(self, key: str) -> frozenset[str]:
        """The values of ``key`` an event must have (empty: any)."""
        values: frozenset[str] = getattr(self, key)
        return values

    @property
    def keys(self) -> tuple[str, ...]:
        """The filtered keys, in :data:`~kenbun_analytics.engine.frames.KEYS` order."""
        return tuple(key for key in KEYS if self.values(key))

    def __bool__(self) -> bool:
        return bool(self.keys)

    def only(self, key: str) -> bool:
        """Whether ``key`` is the one filtered key."""
        return self.keys == (key,)

    def without(self, key: str) -> Filters:
        """These filters with none on ``key``."""
        return Filters.of(**{other: self.values(other) for other in KEYS if other != key})


NO_FILTERS = Filters()


def codes_of(layout: Layout, key: str, values: Iterable[str]) -> list[int]:
    """The codes of those of ``values`` that ``key``'s dictionary holds, ascending."""
    known = layout.codes[key]
    return sorted({known[value] for value in values if value in known})


def _matching(codes: pl.Series, wanted: list[int]) -> pl.Series:
    """Which of ``codes`` are among ``wanted`` (false for a null code)."""
    if len(wanted) == 1:
        return (codes == wanted[0]).fill_null(value=False)
    return codes.is_in(pl.Series(wanted, dtype=codes.dtype).implode()).fill_null(value=False)


SPARSE = 64
"""Rows are gathered from the events' chunks as they are when fewer than one
in SPARSE of their span: copying the span into one chunk first costs more."""


def gather_events(layout: Layout, columns: Sequence[str], rows: pl.Series) -> pl.DataFrame:
    """The event ``columns`` at ``rows``.

    A layout read from files holds its events in many chunks, where a gather
    looks up each row's chunk. For many rows, the rows' span is copied into
    one chunk first, which costs less than those lookups.
    """
    events = layout.events.select(columns)
    if events.n_chunks() == 1 or rows.is_empty():
        return events[rows]
    first, last = cast(int, rows.min()), cast(int, rows.max())
    if rows.len() * SPARSE < last - first + 1:
        return events[rows]
    span = events.slice(first, last - first + 1).rechunk()
    return span[(rows - first).cast(ROWS)] if first else span[rows]


def keep_passing(layout: Layout, filters: Filters, rows: pl.Series) -> pl.Series:
    """Those of ``rows`` whose events pass ``filters``, in their order."""
    wanted = {key: codes_of(layout, key, filters.values(key)) for key in filters.keys}
    if not all(wanted.values()):
        return rows.clear()
    if not wanted or rows.is_empty():
        return rows
    codes = gather_events(layout, list(wanted), rows)
    return rows.filter(_all(_matching(codes.get_column(key), c) for key, c in wanted.items()))


def _all(masks: Iterable[pl.Series]) -> pl.Series:
    """Whether every one of ``masks`` holds, row by row."""
    combined, *rest = masks
    for mask in rest:
        combined &= mask
    return combined


def _indexed(layout: Layout, key: str, codes: list[int], lo: int, hi: int) -> list[pl.Series]:
    """For each of ``codes``, the ascending rows in [lo, hi) of the events
    whose ``key`` has it, from the key's value index (binary searches)."""
    index = layout.indexes[key]
    return [index.rows_of(code, lo, hi) for code in codes]


def _merged(parts: list[pl.Series], *, ordered: bool) -> pl.Series:
    """The rows of ``parts`` together: ascending when ``ordered``, else
    ascending part by part."""
    if len(parts) == 1:
        return parts[0]
    merged = np.concatenate([part.to_numpy() for part in parts])
    return pl.Series("row", np.sort(merged) if ordered else merged, dtype=ROWS)


def passing_rows(
    layout: Layout, filters: Filters, lo: int, hi: int, *, ordered: bool = True
) -> pl.Series:
    """The rows in [lo, hi) of the events that pass ``filters`` (every row of
    the window without filters): ascending, or with ``ordered`` false in any
    order (several values read from a value index are not merged then).

    The filtered key whose value index holds the fewest rows in the window
    gives the candidates when those are few (:data:`INDEX_SHARE`), and the
    other keys are checked on them alone; otherwise the window's codes of
    every filtered key are compared in one pass.
    """
    if hi <= lo:
        return pl.Series("row", [], dtype=ROWS)
    wanted = {key: codes_of(layout, key, filters.values(key)) for key in filters.keys}
    if not all(wanted.values()):
        return pl.Series("row", [], dtype=ROWS)
    indexed = {
        key: _indexed(layout, key, codes, lo, hi)
        for key, codes in wanted.items()
        if key in layout.indexes
    }
    sizes = {key: sum(part.len() for part in parts) for key, parts in indexed.items()}
    driver = min(sizes, key=lambda key: sizes[key], default=None)
    if driver is not None and sizes[driver] * INDEX_SHARE <= hi - lo:
        rows = _merged(indexed[driver], ordered=ordered)
        return keep_passing(layout, filters.without(driver), rows)
    if not wanted:
        return pl.int_range(lo, hi, dtype=ROWS, eager=True).alias("row")
    window = layout.events.slice(lo, hi - lo)
    mask = _all(_matching(window.get_column(key), codes) for key, codes in wanted.items())
    return (mask.arg_true() + lo).cast(ROWS).alias("row")
