"""Value indexes: the rows of each value of a UTM key, and the packed key-and-row
sort that builds them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

PACKED_BITS = 64
"""Width of the integers that pack a sort key with a row number (see :func:`by_key`)."""


def by_key(frame: pl.DataFrame, key: pl.Expr, bound: int) -> pl.DataFrame:
    """The rows whose ``key`` (an integer below ``bound``) is not null, as columns
    ``key`` (UInt64) and ``row`` (UInt32), ordered by key and then row.

    When key and row number fit in one 64-bit integer together, one plain sort
    of those integers orders them (about a third faster than a stable sort of
    the keys); otherwise the keys are sorted stably.
    """
    row_bits = max(frame.height.bit_length(), 1)
    if bound.bit_length() + row_bits <= PACKED_BITS:
        scale = 1 << row_bits
        row = pl.int_range(frame.height, dtype=pl.UInt64)
        packed = frame.select((key.cast(pl.UInt64) * scale + row).alias("packed"))
        return (
            packed.drop_nulls()
            .sort("packed")
            .select(
                (pl.col("packed") // scale).alias("key"),
                (pl.col("packed") % scale).cast(pl.UInt32).alias("row"),
            )
        )
    return (
        frame.select(key.cast(pl.UInt64).alias("key"))
        .with_row_index("row")
        .drop_nulls("key")
        .sort("key", maintain_order=True)
        .select("key", "row")
    )


def sorted_search(ascending: pl.Series, needles: list[int]) -> list[int]:
    """Where each of ``needles`` goes among ``ascending`` (an integer column),
    before any equal value: as ``search_sorted`` with side "left" says.

    A column in one chunk is searched in place with NumPy: a Polars search
    has a fixed cost far above the search itself, and a request makes
    several.
    """
    if ascending.n_chunks() != 1:
        # A scalar needle is compared in the column's type; a Series of needles
        # would have the whole column cast to theirs.
        return [int(ascending.search_sorted(needle, side="left")) for needle in needles]
    values = ascending.to_numpy()
    # A needle of the column's own type: another type would convert the whole column.
    bounds = np.iinfo(values.dtype)
    return [
        0
        if needle < bounds.min
        else values.size
        if needle > bounds.max
        else int(np.searchsorted(values, values.dtype.type(needle), side="left"))
        for needle in needles
    ]


def code_bound(codes: pl.Series) -> int:
    """One more than the largest code (0 when there is none)."""
    largest = codes.max()
    return 0 if largest is None else int(largest) + 1  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ValueIndex:
    """The rows of each value of one UTM key: ``rows[offsets[c]:offsets[c + 1]]``
    are the ascending row indices (UInt32, 4 bytes an event) of the events whose
    code is ``c``."""

    rows: pl.Series
    offsets: pl.Series

    def rows_of(self, code: int, lo: int, hi: int) -> pl.Series:
        """The rows of ``code`` inside [lo, hi): one slice, found by binary search."""
        if code + 1 >= self.offsets.len():
            return self.rows.clear()
        start, end = int(self.offsets[code]), int(self.offsets[code + 1])
        rows = self.rows.slice(start, end - start)
        first, last = sorted_search(rows, [lo, hi])
        return rows.slice(first, last - first)


INDEXED_VALUES = 1 << 8
"""A UTM key with more values than this gets a :class:`ValueIndex`. One with
fewer has one-byte codes (:func:`code_dtype`), and scanning a window's codes
for one value costs about what gathering its rows from an index would,
without 4 bytes an event held for it."""


def indexed(names: int) -> bool:
    """Whether a UTM key whose dictionary has ``names`` values gets a value index."""
    return names > INDEXED_VALUES


def value_index(codes: pl.Series, names: int) -> ValueIndex:
    """Index the rows of every code of ``codes`` (nulls are left out)."""
    ordered = by_key(codes.to_frame("code"), pl.col("code"), names)
    boundaries = pl.int_range(names + 1, dtype=pl.UInt64, eager=True)
    offsets = ordered.get_column("key").search_sorted(boundaries, side="left").cast(pl.Int64)
    return ValueIndex(rows=ordered.get_column("row"), offsets=offsets)
