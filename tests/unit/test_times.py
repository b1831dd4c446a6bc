"""The events' times held in four bytes an event (``times.Times``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from kenbun_analytics.engine.times import BUCKET, TIME, Times

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Times near and across bucket edges, before 1970 too, and far apart.
EDGES = st.integers(-3, 3).flatmap(
    lambda bucket: st.integers(-2, 2).map(lambda step: bucket * BUCKET + step)
)
MICROS = EDGES | st.integers(-(10**15), 10**15) | st.integers(-(2**62), 2**62)


def series(micros: list[int]) -> pl.Series:
    return pl.Series("occurred_at", sorted(micros), dtype=pl.Int64).cast(TIME)


@settings(max_examples=300, deadline=None)
@given(micros=st.lists(MICROS, max_size=40), data=st.data())
def test_times_answer_as_the_plain_column_does(micros: list[int], data: st.DataObject) -> None:
    """Every time, any slice, any rows, any search: as the sorted column says."""
    plain = series(micros)
    times = Times.of(plain)
    assert len(times) == plain.len()
    assert times.series().equals(plain)
    assert times.buckets.len() == len({m // BUCKET for m in micros})
    physical = plain.to_physical()
    for row in range(len(micros)):
        assert times.micros(row) == physical[row]
    lo = data.draw(st.integers(0, len(micros)))
    hi = data.draw(st.integers(0, len(micros)))
    assert times.slice(lo, hi).equals(plain.slice(lo, max(0, hi - lo)))
    picked = data.draw(st.lists(st.integers(0, len(micros) - 1))) if micros else []
    rows = pl.Series(picked, dtype=pl.UInt32)
    assert times.gather(rows).equals(plain.gather(rows))
    for needle in data.draw(st.lists(MICROS | st.sampled_from(micros or [0]), max_size=8)):
        for side in ("left", "right"):
            assert times.search(needle, side) == physical.search_sorted(needle, side=side)


def test_a_bucket_holds_about_seventy_minutes() -> None:
    """Events an hour apart share a bucket or sit in the next: a day of events
    every minute takes 21 buckets beside their 4-byte offsets."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    day = pl.Series([start + timedelta(minutes=m) for m in range(1440)], dtype=TIME)
    times = Times.of(day)
    assert times.offsets.dtype == pl.UInt32
    assert 20 <= times.buckets.len() <= 22
    assert times.series().equals(day)
    assert times.search(int((start - EPOCH) / timedelta(microseconds=1)), "left") == 0


@settings(max_examples=300, deadline=None)
@given(micros=st.lists(MICROS, min_size=1, max_size=30), added=st.lists(MICROS, max_size=10))
def test_inserted_times_are_the_times_of_all_the_events(
    micros: list[int], added: list[int]
) -> None:
    """Rows inserted where their times put them (anywhere: before, among and
    after the old ones, in buckets old or new) give the times of all the
    events, part for part."""
    plain, new = series(micros), series(added)
    at = plain.to_physical().search_sorted(new.to_physical(), side="right").to_numpy()
    got = Times.of(plain).inserted(at.astype("int64"), new)
    expected = Times.of(series(micros + added))
    for part in ("offsets", "buckets", "starts"):
        assert getattr(got, part).equals(getattr(expected, part)), part


def test_times_read_from_many_chunks_are_held_in_one() -> None:
    """A layout read from a file hands over its columns in many chunks; the
    times keep one each, which the searches read without copying."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    parts = [
        pl.Series([start + timedelta(hours=h, minutes=m) for m in range(3)], dtype=TIME)
        for h in range(4)
    ]
    whole = Times.of(pl.concat(parts, rechunk=False))
    chunked = Times(
        offsets=pl.concat([whole.offsets.slice(0, 5), whole.offsets.slice(5)], rechunk=False),
        buckets=whole.buckets,
        starts=whole.starts,
    )
    assert [getattr(chunked, part).n_chunks() for part in ("offsets", "buckets", "starts")] == [
        1,
        1,
        1,
    ]
    assert chunked.series().equals(whole.series())
