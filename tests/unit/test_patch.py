"""Patching: a layout after some events changed is the layout of its own events."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenbun_analytics.engine import index as index_module
from kenbun_analytics.engine import previous as previous_module
from kenbun_analytics.engine.frames import Narrower, previous_day
from kenbun_analytics.engine.patch import patch as patch_layout
from kenbun_analytics.engine.patch import update
from kenbun_analytics.engine.queries import campaign_leads
from tests.unit.test_queries import (
    EVENTS,
    HOURS,
    MOMENTS,
    T0,
    Event,
    aggregate,
    as_read,
    assert_derived_alike,
    assert_same_events,
    built_from,
    day,
    derived_again,
    raw_events,
)


@settings(max_examples=200, deadline=None)
@given(
    before=st.dictionaries(st.integers(0, 40), EVENTS, max_size=25),
    changes=st.dictionaries(st.integers(0, 40), st.none() | EVENTS, max_size=15),
    start=st.none() | MOMENTS,
)
def test_an_incremental_update_answers_like_a_full_build(
    before: dict[int, Event], changes: dict[int, Event | None], start: timedelta | None
) -> None:
    """Deleting, changing and adding events (new values and new leads among them)
    through ``update`` gives the answers of building the final events afresh."""
    after = {**before, **changes}
    final = {i: event for i, event in after.items() if event is not None}
    updated = update(
        built_from(raw_events(before)),
        pl.Series("event_id", sorted(changes), dtype=pl.Int64),
        as_read({i: event for i, event in final.items() if i in changes}),
    )
    fresh = built_from(raw_events(final))
    for key in ("campaign", "source"):
        for since in (None, start):
            assert aggregate(updated, key, since) == aggregate(fresh, key, since)
        for name in fresh.codes[key]:
            leads = [
                campaign_leads(
                    built, rows=built.rows_of(key, built.codes[key][name], 0, built.events.height)
                ).rows()
                for built in (updated, fresh)
            ]
            assert leads[0] == leads[1]


def patchable_changes(before: dict[int, Event]) -> st.SearchStrategy[dict[int, Event | None]]:
    """Deletes, edits keeping an event's time or moving it, and new events: at
    any time from the midnight of the first event's day on (an existing
    event's instant among them), or after the last."""
    times = sorted(day(at) - T0 for *_, at, _ in before.values())
    midnight = timedelta(days=times[0].days)
    anywhere = st.integers(0, 5 * 86_400_000_000).map(
        lambda micros: midnight + timedelta(microseconds=micros)
    ) | st.sampled_from(times)

    def at(moments: st.SearchStrategy[timedelta]) -> st.SearchStrategy[Event]:
        return st.tuples(EVENTS, moments).map(lambda pair: (*pair[0][:3], pair[1], pair[0][4]))

    edits = {
        i: st.none() | at(st.just(day(when) - T0)) | at(anywhere)
        for i, (*_, when, _) in before.items()
    }
    fresh = st.dictionaries(st.integers(41, 60), at(anywhere), max_size=6)
    return st.fixed_dictionaries({}, optional=edits).flatmap(
        lambda changes: fresh.map(lambda added: {**changes, **added})
    )


@pytest.mark.parametrize(
    ("indexed_values", "day_types"),
    [(-1, previous_module.DAY_TYPES), (index_module.INDEXED_VALUES, ())],
    ids=["indexed, one-byte days", "scanned, four-byte days"],
)
@settings(max_examples=120, deadline=None)
@given(data=st.data(), before=st.dictionaries(st.integers(0, 40), EVENTS, min_size=1, max_size=25))
def test_a_patched_layout_is_the_layout_of_its_own_events(
    indexed_values: int,
    day_types: Narrower,
    data: st.DataObject,
    before: dict[int, Event],
) -> None:
    """An update is patched, not rebuilt, wherever its events land (from the
    first event's day on): its pair indices, value indexes and day totals are
    exactly those derived afresh from its events (tombstones included, and the
    inserted rows in their places), and it answers like a full build of the
    final events. With every key indexed, and with none (few values: their
    codes are scanned); with the narrowest and the widest previous-day columns."""
    with (
        patch.object(index_module, "INDEXED_VALUES", indexed_values),
        patch.object(previous_module, "DAY_TYPES", day_types),
    ):
        check_patched_layout(data, before)


def check_patched_layout(data: st.DataObject, before: dict[int, Event]) -> None:
    changes = data.draw(patchable_changes(before))
    final = {i: event for i, event in {**before, **changes}.items() if event is not None}
    start = data.draw(st.none() | MOMENTS)
    old = built_from(raw_events(before))
    patched = patch_layout(
        old,
        pl.Series("event_id", sorted(changes), dtype=pl.Int64),
        as_read({i: event for i, event in final.items() if i in changes}),
    )
    assert patched is not None
    derived = derived_again(patched)
    assert_same_events(patched, derived)
    assert patched.indexes.keys() == derived.indexes.keys()
    for key, index in derived.indexes.items():
        assert patched.indexes[key].rows.equals(index.rows)
        assert patched.indexes[key].offsets.equals(index.offsets)
    for key in ("campaign", "source", "medium"):
        assert patched.days[key].equals(derived.days[key])
        assert patched.codes[key] == derived.codes[key]
    fresh = built_from(raw_events(final))
    for key in ("campaign", "source"):
        for since in (None, start):
            assert aggregate(patched, key, since) == aggregate(fresh, key, since)


def test_events_moved_or_arriving_late_are_patched_into_their_places() -> None:
    """An event moved earlier, and one arriving before the last, are inserted
    where their times put them (the moved one's old row left as a tombstone);
    only one landing on a day before the first event's is derived afresh."""
    old = built_from(
        raw_events(
            {
                1: ("a", "s", "L1", HOURS, 1),
                2: ("a", "s", "L2", 5 * HOURS, 1),
                3: ("b", "s", "L1", 9 * HOURS, 1),
            }
        )
    )
    ids = pl.Series("event_id", [3, 4], dtype=pl.Int64)
    changes = raw_events({3: ("b", "s", "L1", 2 * HOURS, 1), 4: ("a", "t", "L3", 5 * HOURS, 2)})
    patched = patch_layout(old, ids, changes)
    assert patched is not None
    assert patched.events.get_column("event_id").to_list() == [1, 3, 2, 4, None]
    assert patched.times.series().to_list() == [
        day(HOURS),
        day(2 * HOURS),
        day(5 * HOURS),
        day(5 * HOURS),
        day(9 * HOURS),
    ]
    assert aggregate(patched, "campaign", None) == aggregate(
        built_from(
            raw_events(
                {
                    1: ("a", "s", "L1", HOURS, 1),
                    2: ("a", "s", "L2", 5 * HOURS, 1),
                    3: ("b", "s", "L1", 2 * HOURS, 1),
                    4: ("a", "t", "L3", 5 * HOURS, 2),
                }
            )
        ),
        "campaign",
        None,
    )
    earlier = raw_events({4: ("a", "s", "L3", -HOURS, 1)})
    four = pl.Series("event_id", [4], dtype=pl.Int64)
    assert patch_layout(old, four, earlier) is None
    assert update(old, four, earlier).events.get_column("event_id").to_list() == [4, 1, 2, 3]


@pytest.mark.parametrize(
    ("values", "narrow", "wide"), [(256, pl.UInt8, pl.UInt16), (65_536, pl.UInt16, pl.UInt32)]
)
def test_codes_widen_when_a_dictionary_outgrows_them(
    values: int, narrow: type[pl.DataType], wide: type[pl.DataType]
) -> None:
    """Codes take the narrowest width their dictionary allows; an update that
    adds the value one past it is derived afresh with wider codes, and the
    first and the new value still answer."""
    before = {i: (f"c{i}", "s", "L1", 0, 1) for i in range(values)}
    old = built_from(raw_events(before))
    assert old.events.schema["campaign"] == narrow
    assert old.events.schema["source"] == pl.UInt8
    added = {values: ("new", "s", "L2", 1, 5)}
    ids = pl.Series("event_id", [values], dtype=pl.Int64)
    assert patch_layout(old, ids, raw_events(added)) is None
    updated = update(old, ids, raw_events(added))
    assert updated.events.schema["campaign"] == wide
    assert updated.days["campaign"].schema["campaign"] == wide
    answers = {row[0]: row[1:5] for row in aggregate(updated, "campaign", None)}
    assert answers["c0"] == (1, 1, 1, 1)
    assert answers["new"] == (1, 1, 0, 5)
    assert aggregate(updated, "campaign", None) == aggregate(
        built_from(raw_events({**before, **added})), "campaign", None
    )


def test_points_take_the_narrowest_width_through_patches() -> None:
    """Points are held as narrow as they all fit; a patch bringing a larger
    number widens them, and deleting it narrows them again, as a fresh derive would."""
    old = built_from(raw_events({1: ("a", "s", "L1", 0, 3), 2: ("a", "s", "L2", 1, -3)}))
    assert old.events.schema["points"] == pl.Int8
    ids = pl.Series("event_id", [3], dtype=pl.Int64)
    for points, dtype in ((128, pl.Int16), (-40_000, pl.Int32), (-128, pl.Int8)):
        patched = patch_layout(old, ids, raw_events({3: ("a", "s", "L1", 2, points)}))
        assert patched is not None
        assert patched.events.schema["points"] == dtype
        assert aggregate(patched, "campaign", None)[0][4] == points
        assert_derived_alike(patched)
        deleted = patch_layout(patched, ids, raw_events({}))
        assert deleted is not None
        assert deleted.events.schema["points"] == pl.Int8


def test_previous_days_widen_when_the_events_outgrow_a_byte() -> None:
    """Events on 255 UTC days keep their previous days in one byte, and windows
    starting on any of them answer; an update bringing a 256th day is derived
    afresh with two bytes, and answers like a fresh build."""
    before = {
        1: ("a", "s", "L1", 0, 1),
        2: ("a", "s", "L2", 100, 1),
        3: ("a", "s", "L1", 254, 1),
        4: ("b", "s", "L1", 254, 2),
    }
    old = built_from(raw_events(before))
    column = previous_day("campaign", "lead")
    assert old.events.schema[column] == pl.UInt8
    assert old.events.get_column(column).to_list() == [0, 0, 1, 0]
    late = timedelta(days=254)
    assert [row[:5] for row in aggregate(old, "campaign", late)] == [
        ("a", 1, 1, 1, 1),
        ("b", 1, 1, 1, 2),
    ]
    assert [row[:5] for row in aggregate(old, "campaign", late - HOURS)] == [
        ("a", 1, 1, 1, 1),
        ("b", 1, 1, 1, 2),
    ]
    added = {5: ("a", "s", "L2", 255, 1)}
    ids = pl.Series("event_id", [5], dtype=pl.Int64)
    assert patch_layout(old, ids, raw_events(added)) is None
    updated = update(old, ids, raw_events(added))
    assert updated.events.schema[column] == pl.UInt16
    assert updated.events.get_column(column).to_list() == [0, 0, 1, 0, 101]
    fresh = built_from(raw_events({**before, **added}))
    for since in (None, timedelta(days=100), late, late + HOURS, timedelta(days=255)):
        assert aggregate(updated, "campaign", since) == aggregate(fresh, "campaign", since)
    assert [row[:5] for row in aggregate(updated, "campaign", late)] == [
        ("a", 2, 2, 1, 2),
        ("b", 1, 1, 1, 2),
    ]
