"""The events' times, ascending, in four bytes an event instead of eight.

Microseconds since the epoch are split at 2**32 (about 71.6 minutes): each
event keeps the low 32 bits (``offsets``), and the high part, its *bucket*, is
held once for the run of events in it (``buckets`` and ``starts``, one entry
per bucket that holds events). The times are sorted, so the buckets of the rows
are ascending and each bucket's rows are one run. Events dense in time (many
per 71.6 minutes) take about four bytes each; events spread thin (one per
bucket at worst) cost what they would as plain times, 8 bytes each plus 4.

Everything here reads a few rows or one run of them: a time at a row, the row
range of a time (binary searches on the buckets, then on one bucket's offsets),
the times of a slice or of some rows. The full column exists only while a
layout is derived; a patch rebuilds the times only from its first inserted
row on (:meth:`Times.inserted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

SHIFT = 32
BUCKET = 1 << SHIFT
"""Microseconds in a bucket: what 32 bits of offset hold."""
TIME = pl.Datetime("us", "UTC")


@dataclass(frozen=True, slots=True)
class Times:
    """Ascending times: the time of row ``r`` is ``buckets[k] * BUCKET +
    offsets[r]`` microseconds since the epoch, where ``starts[k] <= r <
    starts[k + 1]`` (the last bucket runs to the end)."""

    offsets: pl.Series
    """UInt32, one per event."""
    buckets: pl.Series
    """Int64, ascending: the buckets that hold events."""
    starts: pl.Series
    """Int64: the first row of each bucket."""

    def __post_init__(self) -> None:
        # One chunk each (a layout read from a file arrives in many): the
        # searches read them as NumPy arrays, which costs a copy otherwise.
        for part in ("offsets", "buckets", "starts"):
            object.__setattr__(self, part, getattr(self, part).rechunk())

    @classmethod
    def of(cls, occurred_at: pl.Series) -> Times:
        """The times of ``occurred_at`` (ascending, no nulls)."""
        return cls._of_micros(occurred_at.to_physical().to_numpy())

    @classmethod
    def _of_micros(cls, micros: npt.NDArray[np.int64]) -> Times:
        high = micros >> SHIFT  # floors, before 1970 too
        starts = np.flatnonzero(np.diff(high)) + 1
        if len(high):
            starts = np.append(0, starts)
        return cls(
            offsets=pl.Series("offset", (micros & (BUCKET - 1)).astype(np.uint32)),
            buckets=pl.Series("bucket", high[starts], dtype=pl.Int64),
            starts=pl.Series("start", starts, dtype=pl.Int64),
        )

    def __len__(self) -> int:
        return self.offsets.len()

    def micros(self, row: int) -> int:
        """Microseconds since the epoch of the event at ``row`` (negative: from the end)."""
        row = row % len(self)
        # NumPy: a Polars scalar search costs about a hundred times more.
        bucket = int(np.searchsorted(self.starts.to_numpy(), row, side="right")) - 1
        return int(self.buckets[bucket]) * BUCKET + int(self.offsets[row])

    def search(self, micros: int, side: Literal["left", "right"]) -> int:
        """Where ``micros`` goes among the times, as ``search_sorted`` on them would say.

        The bucket is found by one binary search, then the place among that
        bucket's offsets by another, both in NumPy on the arrays in place (a
        request makes several of these searches).
        """
        high = micros >> SHIFT
        # The first offset past a target is the first at or past the one after it.
        low = (micros & (BUCKET - 1)) + (side == "right")
        buckets, starts = self.buckets.to_numpy(), self.starts.to_numpy()
        found = int(np.searchsorted(buckets, high, side="left"))
        if found == len(buckets):
            return len(self)
        start = int(starts[found])
        if int(buckets[found]) != high:
            return start
        end = int(starts[found + 1]) if found + 1 < len(starts) else len(self)
        if low >= BUCKET:
            return end
        offsets = self.offsets.to_numpy()[start:end]
        return start + int(np.searchsorted(offsets, np.uint32(low), side="left"))

    def searches(self, micros: pl.Series, side: Literal["left", "right"]) -> npt.NDArray[np.int64]:
        """:meth:`search` for each of ``micros`` (Int64), in one vectorized pass:
        the bucket of each by binary search, then its place among that bucket's
        offsets (the first row of the next bucket when its own holds no event)."""
        needles = micros.to_numpy().astype(np.int64)
        if not len(self):
            return np.zeros(len(needles), dtype=np.int64)
        high = needles >> SHIFT
        # The first offset past a target is the first at or past the one after it.
        low = (needles & (BUCKET - 1)) + (side == "right")
        buckets, starts = self.buckets.to_numpy(), self.starts.to_numpy()
        ends = np.append(starts[1:], len(self))
        found = np.searchsorted(buckets, high, side="left")
        inside = np.minimum(found, len(buckets) - 1)
        hit = (found < len(buckets)) & (buckets[inside] == high)
        start = np.where(found < len(buckets), starts[inside], len(self))
        return segment_search(
            self.offsets.to_numpy(), start, np.where(hit, ends[inside], start), low
        )

    def inserted(self, at: npt.NDArray[np.int64], micros: pl.Series) -> Times:
        """These times with rows at ``micros`` (ascending) inserted before the
        old rows ``at`` (ascending; ``len(self)``: after the last), as their
        times place them. Only the rows from the first insertion on are read."""
        if not micros.len():
            return self
        first = int(at[0])
        tail = np.sort(
            np.concatenate(
                [
                    self.slice(first, len(self)).to_physical().to_numpy(),
                    micros.to_physical().to_numpy(),
                ]
            )
        )
        after = Times._of_micros(tail)
        kept = int(np.searchsorted(self.starts.to_numpy(), first, side="left"))
        buckets, starts = self.buckets.slice(0, kept), self.starts.slice(0, kept)
        joined = after.buckets, after.starts + first
        if kept and int(buckets[-1]) == int(after.buckets[0]):  # one run across the cut
            joined = after.buckets.slice(1), joined[1].slice(1)
        return Times(
            offsets=pl.concat([self.offsets.slice(0, first), after.offsets], rechunk=True),
            buckets=pl.concat([buckets, joined[0]], rechunk=True),
            starts=pl.concat([starts, joined[1]], rechunk=True),
        )

    def slice(self, lo: int, hi: int) -> pl.Series:
        """The times of rows [lo, hi)."""
        hi = max(lo, hi)
        starts = self.starts.to_numpy()
        first, last = np.searchsorted(starts, [lo, hi], side="right") - 1
        bounds = np.append(starts[first + 1 : last + 1], hi)
        lengths = np.diff(np.append(lo, bounds)) if hi > lo else bounds[:0]
        high = np.repeat(self.buckets.to_numpy()[first : first + len(lengths)], lengths)
        return self._times(high, self.offsets.slice(lo, hi - lo)).set_sorted()

    def gather(self, rows: pl.Series) -> pl.Series:
        """The times of ``rows``."""
        bucket = np.searchsorted(self.starts.to_numpy(), rows.to_numpy(), side="right") - 1
        return self._times(self.buckets.to_numpy()[bucket], self.offsets.gather(rows))

    def series(self) -> pl.Series:
        """Every time, as the column ``occurred_at``."""
        return self.slice(0, len(self))

    @staticmethod
    def _times(high: np.ndarray, offsets: pl.Series) -> pl.Series:
        micros = (high << SHIFT) + offsets.to_numpy()
        return pl.Series("occurred_at", micros, dtype=pl.Int64).cast(TIME)


def segment_search(
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
