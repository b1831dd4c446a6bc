"""The dashboard engine (dashboards.md): filters, days in a time zone and buckets,
totals, time series and pages of leads; on plain frames, and on random worlds
against the straight-SQL references of ``support/world.py``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch
from zoneinfo import ZoneInfo, available_timezones

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kenbun_analytics.engine import dashboards, queries
from kenbun_analytics.engine import filters as filtering
from kenbun_analytics.engine import index as index_module
from kenbun_analytics.engine.dashboards import (
    TIMESERIES,
    TOTALS,
    event_span,
    lead_page,
    leading_names,
    timeseries,
    top_names,
    totals,
    value_rows,
)
from kenbun_analytics.engine.filters import Filters, passing_rows
from kenbun_analytics.engine.frames import KEYS, MONEY
from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.engine.patch import update
from kenbun_analytics.engine.zones import (
    Interval,
    bucket_edges,
    bucket_label,
    bucket_starts,
    day_end,
    day_start,
    utc_micros,
)
from kenbun_analytics.refresh.full import load_unit
from kenbun_analytics.source.postgres import Source
from support.world import SERIES_FIELDS, World, normalized
from tests.integration.test_properties import AMOUNTS, LEVELS, SCORE_DELTAS, STAGES
from tests.unit.test_queries import EVENTS, MOMENTS, T0, as_read, built_from, raw_events

MICRO = timedelta(microseconds=1)
EXAMPLES = max(15, settings().max_examples // 2)
"""Random worlds per property: half the profile's examples (each writes to
PostgreSQL and loads a layout), at least 15."""


def moment(text: str) -> datetime:
    """An aware instant from RFC 3339 text."""
    return datetime.fromisoformat(text)


def labels(starts: list[datetime], tz: str) -> list[str]:
    return [bucket_label(start, tz) for start in starts]


# ------------------------------------------------------------ zones --


@pytest.mark.parametrize(
    ("tz", "day", "start", "hours"),
    [
        ("UTC", date(2026, 3, 29), "2026-03-29T00:00:00Z", 24),
        ("Europe/Berlin", date(2026, 3, 29), "2026-03-29T00:00:00+01:00", 23),
        ("Europe/Berlin", date(2026, 10, 25), "2026-10-25T00:00:00+02:00", 25),
        ("America/New_York", date(2026, 3, 8), "2026-03-08T00:00:00-05:00", 23),
        ("America/New_York", date(2026, 11, 1), "2026-11-01T00:00:00-04:00", 25),
        ("Asia/Kolkata", date(2026, 3, 29), "2026-03-29T00:00:00+05:30", 24),
        ("Australia/Lord_Howe", date(2026, 4, 5), "2026-04-05T00:00:00+11:00", 24.5),
        ("Australia/Lord_Howe", date(2026, 10, 4), "2026-10-04T00:00:00+10:30", 23.5),
        # Midnight skipped: the day starts when the clocks jump to 01:00.
        ("America/Santiago", date(2026, 9, 6), "2026-09-06T01:00:00-03:00", 23),
        ("America/Santiago", date(2026, 4, 4), "2026-04-04T00:00:00-03:00", 25),
        ("Asia/Beirut", date(2010, 3, 28), "2010-03-28T01:00:00+03:00", 23),
        ("America/Havana", date(2026, 3, 8), "2026-03-08T01:00:00-04:00", 23),
        ("America/Sao_Paulo", date(2018, 11, 4), "2018-11-04T01:00:00-02:00", 23),
        # A day the zone skipped entirely starts where the next one does.
        ("Pacific/Apia", date(2011, 12, 30), "2011-12-31T00:00:00+14:00", 0),
    ],
)
def test_a_day_runs_from_its_first_instant_to_the_next_days(
    tz: str, day: date, start: str, hours: float
) -> None:
    """A local day starts at its midnight, or where a change skips midnight at
    the first instant that exists; it lasts 23, 24.5 or 25 hours across changes,
    and ends with the microsecond before the next day's start."""
    zone = ZoneInfo(tz)
    first = day_start(day, zone)
    assert bucket_label(first, tz) == start.replace("+00:00", "Z")
    following = day_start(day + timedelta(days=1), zone)
    assert following.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=hours)
    assert day_end(day, zone).astimezone(UTC) == following.astimezone(UTC) - MICRO


def test_date_bounds_in_a_zone_are_those_of_the_contract() -> None:
    """dashboards.md's example: March 2026 in Berlin runs from +01:00 to the
    last microsecond of March 31 at +02:00."""
    berlin = ZoneInfo("Europe/Berlin")
    assert bucket_label(day_start(date(2026, 3, 1), berlin), "Europe/Berlin") == (
        "2026-03-01T00:00:00+01:00"
    )
    assert bucket_label(day_end(date(2026, 3, 31), berlin), "Europe/Berlin") == (
        "2026-03-31T23:59:59.999999+02:00"
    )


ZONES = sorted(available_timezones())


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(ZONES), day=st.dates(date(1950, 1, 2), date(2037, 12, 31)))
def test_a_day_starts_at_the_first_instant_of_its_date_in_every_zone(zone: str, day: date) -> None:
    """In any zone and on any day, no instant before the start has the date, the
    start has it (or a later one, for a skipped day), and the start is the
    local midnight whenever that exists."""
    tz = ZoneInfo(zone)
    start = day_start(day, tz).astimezone(UTC)
    assert (start - MICRO).astimezone(tz).date() < day <= start.astimezone(tz).date()
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    exists = midnight.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == midnight.replace(
        tzinfo=None
    )
    assert exists == (start == midnight.astimezone(UTC))
    assert day_end(day - timedelta(days=1), tz).astimezone(UTC) == start - MICRO


@pytest.mark.parametrize(
    ("tz", "interval", "first", "last", "expected"),
    [
        (
            "Europe/Berlin",
            "day",
            "2026-03-28T12:00:00+01:00",
            "2026-03-30T01:00:00+02:00",
            ["2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"],
        ),
        (
            "Europe/Berlin",
            "week",
            "2026-03-25T12:00:00Z",
            "2026-04-02T00:00:00Z",
            ["2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00"],
        ),
        (
            "America/New_York",
            "month",
            "2026-03-01T04:59:59.999999Z",
            "2026-03-01T05:00:00Z",
            ["2026-02-01T00:00:00-05:00", "2026-03-01T00:00:00-05:00"],
        ),
        (
            "Asia/Kolkata",
            "day",
            "2026-03-28T18:29:59.999999Z",
            "2026-03-28T18:30:00Z",
            ["2026-03-28T00:00:00+05:30", "2026-03-29T00:00:00+05:30"],
        ),
        (
            "Australia/Lord_Howe",
            "day",
            "2026-04-04T13:00:00Z",
            "2026-04-05T13:29:59.999999Z",
            ["2026-04-05T00:00:00+11:00"],
        ),
        (
            "America/Santiago",
            "day",
            "2026-09-06T03:59:59.999999Z",
            "2026-09-06T04:00:00Z",
            ["2026-09-05T00:00:00-04:00", "2026-09-06T01:00:00-03:00"],
        ),
        (
            "Pacific/Apia",
            "day",
            "2011-12-29T12:00:00-10:00",
            "2011-12-31T12:00:00+14:00",
            ["2011-12-29T00:00:00-10:00", "2011-12-31T00:00:00+14:00"],
        ),
        (
            "UTC",
            "week",
            "2026-03-01T00:00:00Z",
            "2026-03-02T00:00:00Z",
            ["2026-02-23T00:00:00Z", "2026-03-02T00:00:00Z"],
        ),
        (
            "Europe/London",
            "month",
            "2026-01-31T23:00:00Z",
            "2026-01-31T23:00:00Z",
            ["2026-01-01T00:00:00+00:00"],
        ),
        ("UTC", "day", "2026-03-02T00:00:00Z", "2026-03-01T23:59:59.999999Z", []),
    ],
)
def test_bucket_starts(
    tz: str, interval: Interval, first: str, last: str, expected: list[str]
) -> None:
    """Every bucket from the one holding the first instant to the one holding
    the last: ISO weeks from Monday, months from the 1st, days cut by the zone."""
    assert (
        labels(bucket_starts(ZoneInfo(tz), interval, moment(first), moment(last)), tz) == expected
    )


def test_bucket_starts_stop_past_the_limit() -> None:
    """With a limit, one start more than the limit says the window holds more buckets."""
    starts = bucket_starts(
        ZoneInfo("UTC"),
        "day",
        moment("2026-01-01T00:00:00Z"),
        moment("2026-12-31T00:00:00Z"),
        limit=10,
    )
    assert len(starts) == 11


def test_bucket_edges_end_where_the_next_bucket_starts() -> None:
    """The edges are the starts' UTC microseconds and the start of the bucket after the last."""
    berlin = ZoneInfo("Europe/Berlin")
    starts = bucket_starts(
        berlin, "day", moment("2026-03-29T12:00:00Z"), moment("2026-03-29T12:00:00Z")
    )
    assert bucket_edges(starts, berlin, "day") == [
        utc_micros(moment("2026-03-28T23:00:00Z")),
        utc_micros(moment("2026-03-29T22:00:00Z")),
    ]
    assert bucket_edges([], berlin, "day") == []


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(
        [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "America/Santiago",
            "Pacific/Apia",
            "Asia/Beirut",
        ]
    ),
    interval=st.sampled_from(["day", "week", "month"]),
    first=st.datetimes(
        datetime(2008, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive; timezones= makes them UTC
        datetime(2030, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    length=st.timedeltas(timedelta(0), timedelta(days=70)),
)
def test_buckets_tile_the_window(
    zone: str, interval: Interval, first: datetime, length: timedelta
) -> None:
    """The buckets follow each other without gap, the first holds the window's
    first instant, the last its last instant, and each starts on a local
    midnight (or the first instant after a skipped one) of a Monday for a
    week, of the 1st for a month."""
    tz = ZoneInfo(zone)
    starts = bucket_starts(tz, interval, first, first + length)
    edges = bucket_edges(starts, tz, interval)
    assert edges == sorted(set(edges))
    assert edges[0] <= utc_micros(first) < edges[1]
    assert edges[-2] <= utc_micros(first + length) < edges[-1]
    for start in starts:
        local = start.date()
        if interval == "week":
            local -= timedelta(days=local.weekday())
        elif interval == "month":
            local = local.replace(day=1)
        assert start.astimezone(UTC) == day_start(local, tz).astimezone(UTC)
        assert bucket_edges([start], tz, interval)[1] in edges


@pytest.mark.parametrize(
    ("instant", "tz", "label"),
    [
        ("2026-03-29T00:00:00Z", "UTC", "2026-03-29T00:00:00Z"),
        ("2026-03-29T00:00:00.000001Z", "UTC", "2026-03-29T00:00:00.000001Z"),
        ("2026-01-05T00:00:00Z", "Europe/London", "2026-01-05T00:00:00+00:00"),
        ("2026-03-29T22:00:00Z", "Europe/Berlin", "2026-03-30T00:00:00+02:00"),
        ("2026-03-09T04:00:00Z", "America/New_York", "2026-03-09T00:00:00-04:00"),
        ("2026-03-28T18:30:00Z", "Asia/Kolkata", "2026-03-29T00:00:00+05:30"),
        ("2026-04-05T13:30:00Z", "Australia/Lord_Howe", "2026-04-06T00:00:00+10:30"),
        ("2026-09-06T04:00:00Z", "America/Santiago", "2026-09-06T01:00:00-03:00"),
        # Local mean time, before the zones were standardised: the offset has seconds.
        ("1900-01-01T00:00:00+00:19:32", "Europe/Amsterdam", "1900-01-01T00:00:00+00:19:32"),
    ],
)
def test_bucket_label(instant: str, tz: str, label: str) -> None:
    """RFC 3339 with the offset in force: Z in UTC, +00:00 elsewhere at offset zero."""
    assert bucket_label(moment(instant).astimezone(ZoneInfo(tz)), tz) == label


# ---------------------------------------------------------- filters --


def test_filters_ignore_empty_values_and_repeats() -> None:
    """An empty value filters nothing; a value given twice is one value."""
    filters = Filters.of(source=["google", "", "google"], medium=[""])
    assert filters == Filters(source=frozenset({"google"}))
    assert filters.keys == ("source",)
    assert filters.only("source")
    assert not Filters.of(campaign=[""])
    assert filters.without("source") == Filters()


# ----------------------------------------------------- plain frames --

# (campaign, source, lead, day, points); the leads of test_queries.facts: L1 is an
# MQL of account A1, L2 of A1 too, L3 has no account; A1 has two deals worth 100.50.
PLAIN = {
    1: ("a", "s", "L1", 0, 1),
    2: ("a", "t", "L2", 1, 2),
    3: ("b", "s", "L2", 1, 4),
    4: ("b", "s", None, 2, 8),
    5: ("c/d %+ é", "t", "L3", 2, 16),
    6: (None, "s", "L1", 3, 32),
}
DEALS = (2, Decimal("100.50"))


def collected(frame: pl.LazyFrame | pl.DataFrame) -> list[tuple[Any, ...]]:
    """Name, counts, points, deals and pipeline of each row."""
    rows = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    columns = [
        "name",
        "total_events",
        "unique_leads",
        "mql_count",
        "total_points",
        "deals_count",
        "pipeline_value",
    ]
    return list(rows.select(columns).iter_rows())


@pytest.mark.parametrize(
    ("group_by", "given", "expected"),
    [
        ("campaign", {"source": ["s"]}, [("b", 2, 1, 0, 12, *DEALS), ("a", 1, 1, 1, 1, *DEALS)]),
        (
            "campaign",
            {"source": ["t"]},
            [("a", 1, 1, 0, 2, *DEALS), ("c/d %+ é", 1, 1, 0, 16, 0, Decimal(0))],
        ),
        (
            "source",
            {"campaign": ["a", "c/d %+ é"]},
            [("t", 2, 2, 0, 18, *DEALS), ("s", 1, 1, 1, 1, *DEALS)],
        ),
        ("campaign", {"campaign": ["a"], "source": ["t"]}, [("a", 1, 1, 0, 2, *DEALS)]),
        ("campaign", {"source": ["nope"]}, []),
        (
            "campaign",
            {"campaign": ["b", "nope"], "source": ["s", "nope"]},
            [("b", 2, 1, 0, 12, *DEALS)],
        ),
        ("source", {"source": ["s", "s", ""]}, [("s", 4, 2, 1, 45, *DEALS)]),
        ("source", {"source": [""]}, [("s", 4, 2, 1, 45, *DEALS), ("t", 2, 2, 0, 18, *DEALS)]),
    ],
)
@pytest.mark.parametrize("narrow", [False, True], ids=["packed", "ranked, summed by Polars"])
def test_filtered_aggregate(
    group_by: str, given: dict[str, list[str]], expected: list[tuple[Any, ...]], narrow: bool
) -> None:
    """Only the events of the filtered values count, for every metric: the leads
    of what is left, and the deals reachable from those leads; a filter on the
    grouped key keeps those rows; unknown values match nothing. Also when pairs
    do not fit in 64 bits (their cells are ranked first) and points could
    outgrow a float's integers (Polars sums them)."""
    built = built_from(raw_events(PLAIN))
    with (
        patch.object(dashboards, "PACKED_BITS", 2 if narrow else dashboards.PACKED_BITS),
        patch.object(dashboards, "EXACT_FLOATS", 0 if narrow else dashboards.EXACT_FLOATS),
    ):
        frame = dashboards.campaign_rows(
            built, group_by=group_by, lo=0, hi=built.events.height, filters=Filters.of(**given)
        ).collect()
    assert collected(frame) == expected
    assert frame.schema == queries.CAMPAIGN_ROW


@pytest.mark.parametrize(
    "given",
    [
        {"campaign": ["a", "b"]},
        {"campaign": ["b", "a", "zz"], "source": ["s"]},
        {"source": ["t"], "campaign": ["c/d %+ é", "a"]},
        {"campaign": ["zz"]},
    ],
)
def test_rows_read_from_value_indexes_are_those_scanned(given: dict[str, list[str]]) -> None:
    """The rows that pass are the same whether a value index gives them or the
    codes are scanned, in order when asked, in some order otherwise."""
    with patch.object(index_module, "INDEXED_VALUES", -1):
        built = built_from(raw_events(PLAIN))
    assert set(built.indexes) == set(KEYS)
    filters, hi = Filters.of(**given), built.events.height
    with patch.object(filtering, "INDEX_SHARE", 10**9):
        scanned = passing_rows(built, filters, 1, hi).to_list()
    with patch.object(filtering, "INDEX_SHARE", 0):
        assert passing_rows(built, filters, 1, hi).to_list() == scanned
        assert sorted(passing_rows(built, filters, 1, hi, ordered=False).to_list()) == scanned


@pytest.mark.parametrize(
    ("group_by", "given", "expected"),
    [
        # L1 and L2 reach A1's deals from several values: they count once.
        ("campaign", {}, (3, 5, 3, 1, 31, *DEALS, 0, 2)),
        ("source", {}, (2, 6, 3, 1, 63, *DEALS, 0, 3)),
        ("source", {"campaign": ["b"]}, (1, 2, 1, 0, 12, *DEALS, 1, 2)),
        ("campaign", {"source": ["t"]}, (2, 2, 2, 0, 18, *DEALS, 1, 2)),
        ("campaign", {"source": ["nope"]}, (0, 0, 0, 0, 0, 0, Decimal(0), None, None)),
    ],
)
def test_totals(group_by: str, given: dict[str, list[str]], expected: tuple[Any, ...]) -> None:
    """Every counting event of the key as one value: each lead and deal once; no
    events gives zeros and no times."""
    built = built_from(raw_events(PLAIN))
    filters = Filters.of(**given)
    row = totals(built, group_by=group_by, lo=0, hi=built.events.height, filters=filters)
    assert row.schema == TOTALS
    values = row.row(0, named=True)
    days = [
        None if values[name] is None else (values[name] - T0).days
        for name in ("first_event_at", "last_event_at")
    ]
    columns = [
        "values",
        "total_events",
        "unique_leads",
        "mql_count",
        "total_points",
        "deals_count",
        "pipeline_value",
    ]
    assert (*(values[name] for name in columns), *days) == expected
    aggregate = dashboards.campaign_rows(
        built, group_by=group_by, lo=0, hi=built.events.height, filters=filters
    )
    assert values["values"] == aggregate.collect().height


def test_a_time_series_cuts_its_buckets_to_the_window() -> None:
    """Per name and bucket, the aggregate of the bucket's part of the window;
    zeros where a name has no events, a series of zeros for an unknown name."""
    built = built_from(
        raw_events(
            {
                1: ("a", "s", "L1", timedelta(hours=6), 1),
                2: ("a", "s", "L1", timedelta(hours=30), 2),
                3: ("a", "s", "L2", timedelta(hours=31), 4),
                4: ("b", "s", "L3", timedelta(hours=50), 8),
                5: ("a", "s", "L1", timedelta(hours=80), 16),
            }
        )
    )
    lo, hi = queries.window_rows(built.times, T0 + timedelta(hours=12), T0 + timedelta(hours=60))
    edges = [utc_micros(T0 + timedelta(days=day)) for day in range(4)]
    series = timeseries(
        built, group_by="campaign", lo=lo, hi=hi, names=["a", "zz", "", "b", "a"], edges=edges
    )
    assert series.schema == TIMESERIES
    got = series.select(
        "name", "bucket", "total_events", "unique_leads", "mql_count", "total_points", "deals_count"
    )
    assert got.rows() == [
        ("a", 0, 0, 0, 0, 0, 0),
        ("a", 1, 2, 2, 1, 6, 2),
        ("a", 2, 0, 0, 0, 0, 0),
        ("zz", 0, 0, 0, 0, 0, 0),
        ("zz", 1, 0, 0, 0, 0, 0),
        ("zz", 2, 0, 0, 0, 0, 0),
        ("b", 0, 0, 0, 0, 0, 0),
        ("b", 1, 0, 0, 0, 0, 0),
        ("b", 2, 1, 1, 0, 8, 0),
    ]
    assert timeseries(built, group_by="campaign", lo=lo, hi=hi, names=[], edges=edges).is_empty()
    assert timeseries(built, group_by="campaign", lo=lo, hi=hi, names=["a"], edges=[]).is_empty()


@settings(max_examples=150, deadline=None)
@given(
    events=st.dictionaries(st.integers(0, 60), EVENTS, max_size=30),
    filters=st.builds(
        Filters.of,
        campaign=st.lists(st.sampled_from(["a", "b", "zz", ""]), max_size=2),
        source=st.just([]) | st.lists(st.sampled_from(["s", "t"]), max_size=2),
    ),
    shift=st.sampled_from([0, 0, 5, 19]),
    step=st.sampled_from([24, 24, 48, 7]),
    start=st.none() | MOMENTS,
    end=st.none() | MOMENTS,
)
def test_each_bucket_is_the_aggregate_of_its_part_of_the_window(
    events: dict[int, Any],
    filters: Filters,
    shift: int,
    step: int,
    start: timedelta | None,
    end: timedelta | None,
) -> None:
    """Per name and bucket, the metrics are the filtered aggregate row of that
    name over the window cut to the bucket (zeros without one): for buckets of
    whole UTC days, of days shifted by a zone's offset, and of seven hours."""
    built = built_from(raw_events(events))
    lo, hi = queries.window_rows(
        built.times, None if start is None else T0 + start, None if end is None else T0 + end
    )
    edges = [utc_micros(T0 + timedelta(hours=shift + step * k)) for k in range(-1, 160 // step + 2)]
    names = ["a", "b", "zz"]
    for key in ("campaign", "source"):
        charted = ["s", "t", "zz"] if key == "source" else names
        series = timeseries(
            built, group_by=key, lo=lo, hi=hi, filters=filters, names=charted, edges=edges
        )
        row_edges = built.times.searches(pl.Series(edges, dtype=pl.Int64), "left").clip(lo, hi)
        for bucket in range(len(edges) - 1):
            cut = dashboards.campaign_rows(
                built,
                group_by=key,
                lo=int(row_edges[bucket]),
                hi=int(row_edges[bucket + 1]),
                filters=filters,
            ).collect()
            for name in charted:
                got = series.filter((pl.col("name") == name) & (pl.col("bucket") == bucket))
                wanted = cut.filter(pl.col("name") == name).select(SERIES_FIELDS)
                expected = wanted.row(0) if wanted.height else (0, 0, 0, 0, 0, 0, 0)
                assert got.select(SERIES_FIELDS).row(0) == expected, (key, name, bucket)


def test_pages_of_leads_break_ties_by_lead_id() -> None:
    """Pages follow first touch (latest first), then lead_id; each page is the
    matching slice of the whole order, and the total counts every lead."""
    events = {
        i: ("p", "s", lead, timedelta(hours=hours), 0)
        for i, (lead, hours) in enumerate(
            [("L3", 5), ("L1", 5), ("L2", 5), ("L4", 9), ("L1", 11), (None, 12), ("L5", 1)]
        )
    }
    built = built_from(raw_events(events))
    rows = value_rows(built, group_by="campaign", name="p", lo=0, hi=built.events.height)
    whole = queries.campaign_leads(built, rows=rows, limit=100)
    assert whole.height == 5
    for offset in range(7):
        for limit in (1, 2, 3, 500):
            page = lead_page(built, rows=rows, offset=offset, limit=limit)
            assert page.total == 5
            assert page.leads.equals(whole.slice(offset, limit)), (offset, limit)


def test_a_filter_on_the_grouped_key_drops_other_names_from_a_drilldown() -> None:
    """The drilldown of a value the filters leave out has no rows."""
    built = built_from(raw_events(PLAIN))
    filters = Filters.of(campaign=["b"])
    rows = value_rows(
        built, group_by="campaign", name="a", lo=0, hi=built.events.height, filters=filters
    )
    assert rows.is_empty()
    page = lead_page(built, rows=rows, offset=3)
    assert (page.total, page.leads.height) == (0, 0)


def fresh_answers(built: Layout, filters: Filters, start: timedelta | None) -> list[Any]:
    """Every dashboard answer over ``built`` from T0 + ``start`` on."""
    lo, hi = queries.window_rows(built.times, None if start is None else T0 + start, None)
    edges = [utc_micros(T0 + timedelta(hours=7 * k)) for k in range(0, 20)]
    answers: list[Any] = []
    for key in ("campaign", "source"):
        rows = dashboards.campaign_rows(
            built, group_by=key, lo=lo, hi=hi, filters=filters
        ).collect()
        answers += [rows.rows(), totals(built, group_by=key, lo=lo, hi=hi, filters=filters).rows()]
        leading = leading_names(built, group_by=key, lo=lo, hi=hi, filters=filters)
        assert leading == top_names(rows)
        names = [*leading, "zz"]
        answers.append(
            timeseries(
                built, group_by=key, lo=lo, hi=hi, filters=filters, names=names, edges=edges
            ).rows()
        )
        for name in names:
            value = value_rows(built, group_by=key, name=name, lo=lo, hi=hi, filters=filters)
            for offset in (0, 1, 3):
                page = lead_page(built, rows=value, offset=offset, limit=2)
                answers.append((page.total, page.leads.rows()))
    return answers


PLAIN_FILTERS = st.builds(
    Filters.of,
    campaign=st.lists(st.sampled_from(["a", "b", "zz", ""]), max_size=2),
    source=st.lists(st.sampled_from(["s", "t", ""]), max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(
    before=st.dictionaries(st.integers(0, 40), EVENTS, max_size=20),
    changes=st.dictionaries(st.integers(0, 40), st.none() | EVENTS, max_size=10),
    filters=PLAIN_FILTERS,
    start=st.none() | st.integers(0, 4 * 24).map(lambda hours: timedelta(hours=hours)),
)
def test_a_patched_layout_answers_like_a_fresh_build(
    before: dict[int, Any], changes: dict[int, Any], filters: Filters, start: timedelta | None
) -> None:
    """After deletes, edits and new events (tombstones left in place), every
    dashboard answer equals that of a layout built afresh from the final events."""
    after = {**before, **changes}
    final = {i: event for i, event in after.items() if event is not None}
    updated = update(
        built_from(raw_events(before)),
        pl.Series("event_id", sorted(changes), dtype=pl.Int64),
        as_read({i: event for i, event in final.items() if i in changes}),
    )
    fresh = built_from(raw_events(final))
    assert fresh_answers(updated, filters, start) == fresh_answers(fresh, filters, start)


# ------------------------------------------------- random worlds vs SQL --

POOLS: dict[str, list[Any]] = {
    "campaign": ["spring", "Spring", " spring", "a/b", "50% off", "日本語", 2026, "2026", ""],
    "source": ["google", "c+d", "two words", "café", ""],
    "medium": ["cpc", "q?x#y", "email", ""],
}
"""The UTM values events carry per key (``None`` and a missing key come on top):
some differ only in case or spaces, some need escaping, a JSON number reads as text."""
FILTER_VALUES = {key: [*(str(value) for value in values), "nope"] for key, values in POOLS.items()}
"""The values filters and time series name per key: every text an event can
carry (the empty one ignored), and one that none does."""
ANCHORS = [
    moment(text)
    for text in (
        "2026-03-08T05:00:00Z",  # New York: midnight before the spring change
        "2026-03-08T07:00:00Z",  # New York: 02:00 EST becomes 03:00 EDT
        "2026-03-09T04:00:00Z",  # New York: the next midnight
        "2026-03-28T18:30:00Z",  # Kolkata: midnight of March 29
        "2026-03-28T23:00:00Z",  # Berlin: midnight of March 29
        "2026-03-29T01:00:00Z",  # Berlin and London: clocks go forward
        "2026-03-29T22:00:00Z",  # Berlin: midnight of March 30 (summer time), a Monday
        "2026-03-30T00:00:00Z",  # UTC: a Monday
        "2026-04-04T13:00:00Z",  # Lord Howe: midnight of April 5 (+11:00)
        "2026-04-04T15:00:00Z",  # Lord Howe: 02:00 +11:00 becomes 01:30 +10:30
        "2026-04-05T03:00:00Z",  # Santiago: 24:00 -03:00 becomes 23:00 -04:00
        "2026-04-05T13:30:00Z",  # Lord Howe: midnight of April 6 (+10:30)
        "2026-09-06T04:00:00Z",  # Santiago: midnight skipped, the day starts at 01:00 -03:00
        "2026-10-03T15:30:00Z",  # Lord Howe: 02:00 +10:30 becomes 02:30 +11:00
        "2026-10-24T22:00:00Z",  # Berlin: midnight of October 25
        "2026-10-25T01:00:00Z",  # Berlin: clocks go back
        "2026-11-01T04:00:00Z",  # New York: midnight of November 1
        "2026-11-01T06:00:00Z",  # New York: clocks go back
        "2026-04-01T00:00:00Z",  # a month
    )
]
DELTAS = [
    timedelta(0),
    MICRO,
    -MICRO,
    timedelta(minutes=30),
    -timedelta(minutes=30),
    timedelta(hours=1),
    -timedelta(hours=1),
    timedelta(hours=12),
    timedelta(days=1),
    -timedelta(days=1),
    timedelta(days=3, hours=5),
]
DATES = sorted(
    {
        (anchor + shift).date()
        for anchor in ANCHORS
        for shift in (timedelta(days=-1), timedelta(0), timedelta(days=1))
    }
)
TZS = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Europe/London",
]


@dataclass(frozen=True)
class Spec:
    accounts: int
    leads: list[tuple[int | None, int, int | None, bool]]
    """(account, level, score, email alias) of each lead."""
    deals: list[tuple[int, int, int]]
    """(account, stage, amount) of each deal."""
    events: list[tuple[int | None, Any, Any, Any, int, int, int, bool, bool, bool]]
    """(lead, campaign, source, medium, anchor, delta, score_delta, normalized,
    normalized_parent, in the other org unit) of each event."""


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    accounts = draw(st.integers(0, 3))
    account = st.none() | st.integers(0, accounts - 1) if accounts else st.none()
    leads = draw(
        st.lists(
            st.tuples(
                account,
                st.integers(0, len(LEVELS) - 1),
                st.none() | st.integers(0, 99),
                st.booleans(),
            ),
            min_size=1,
            max_size=7,
        )
    )
    deals = (
        draw(
            st.lists(
                st.tuples(
                    st.integers(0, accounts - 1),
                    st.integers(0, len(STAGES) - 1),
                    st.integers(0, len(AMOUNTS) - 1),
                ),
                max_size=5,
            )
        )
        if accounts
        else []
    )
    lead = st.none() | st.integers(0, len(leads) - 1) if leads else st.none()

    rarely = st.integers(0, 5).map(lambda n: n == 0)

    def value(key: str) -> st.SearchStrategy[Any]:
        return st.sampled_from([*POOLS[key], None, "__missing__"])

    events = draw(
        st.lists(
            st.tuples(
                lead,
                value("campaign"),
                value("source"),
                value("medium"),
                st.integers(0, len(ANCHORS) - 1),
                st.integers(0, len(DELTAS) - 1),
                st.integers(0, len(SCORE_DELTAS)),
                rarely,
                st.booleans(),
                rarely,
            ),
            min_size=8,
            max_size=30,
        )
    )
    return Spec(accounts, leads, deals, events)


def write(world: World, spec: Spec) -> str:
    """The world of ``spec`` in the database; returns the org unit read."""
    world.clear()
    unit, other = world.org_unit("read"), world.org_unit("other")
    accounts = [world.account(unit, name=f"acc {i}") for i in range(spec.accounts)]
    leads = []
    for account, level, score, alias in spec.leads:
        lead_id = world.lead(
            unit,
            account=None if account is None else accounts[account],
            level=LEVELS[level],
            score=score,
            metadata={"first_name": "Ann", "company": "Acme"} if alias else {},
        )
        if alias:
            world.alias(unit, lead_id, "email", f"{lead_id[:6]}@example.com", primary=True)
        leads.append(lead_id)
    for account, stage, amount in spec.deals:
        world.deal(unit, accounts[account], stage=STAGES[stage], amount=AMOUNTS[amount])
    for (
        lead,
        campaign,
        source,
        medium,
        anchor,
        delta,
        score,
        normalized_,
        parent,
        elsewhere,
    ) in spec.events:
        metadata: dict[str, Any] = {}
        for key, value in (
            ("utm_campaign", campaign),
            ("utm_source", source),
            ("utm_medium", medium),
        ):
            if value != "__missing__":
                metadata[key] = value
        if score < len(SCORE_DELTAS):
            metadata["score_delta"] = SCORE_DELTAS[score]
        world.event(
            other if elsewhere else unit,
            lead=None if lead is None or elsewhere else leads[lead],
            occurred_at=ANCHORS[anchor] + DELTAS[delta],
            metadata=metadata,
            normalized=normalized_,
            parent=parent,
        )
    return unit


@dataclass(frozen=True)
class Query:
    group_by: str
    tz: str
    start: date | datetime | None
    end: date | datetime | None
    filters: dict[str, list[str]]
    interval: Interval
    names: list[str] | None


BOUNDS = st.one_of(
    st.none(),
    st.none(),
    st.sampled_from(DATES),
    st.builds(
        lambda anchor, delta: anchor + delta, st.sampled_from(ANCHORS), st.sampled_from(DELTAS)
    ),
)
"""No bound half the time, else a date (a day in the query's zone) or an instant."""


def present(spec: Spec) -> dict[str, list[str]]:
    """Per key, the texts of the values that the events of ``spec`` carry."""
    columns = dict(zip(KEYS, zip(*(event[1:4] for event in spec.events), strict=True), strict=True))
    return {
        key: sorted(
            {str(value) for value in columns[key] if value not in {None, "", "__missing__"}}
        )
        for key in KEYS
    }


def queries_of(spec: Spec) -> st.SearchStrategy[Query]:
    """Queries on the world of ``spec``: filters on at most two keys and names
    charted, mostly values its events carry, sometimes repeated, empty, or
    carried by no event."""
    carried = present(spec)

    def values(key: str) -> st.SearchStrategy[str]:
        rare = st.sampled_from(FILTER_VALUES[key])
        return st.sampled_from(carried[key]) | rare if carried[key] else rare

    @st.composite
    def filters(draw: st.DrawFn) -> dict[str, list[str]]:
        keys = draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True))
        return {key: draw(st.lists(values(key), min_size=1, max_size=3)) for key in keys}

    def with_names(query: Query) -> st.SearchStrategy[Query]:
        names = st.lists(values(query.group_by), max_size=4)
        return st.just(query) | names.map(lambda chosen: dataclasses.replace(query, names=chosen))

    return st.builds(
        Query,
        group_by=st.sampled_from(KEYS),
        tz=st.sampled_from(TZS),
        start=BOUNDS,
        end=BOUNDS,
        filters=filters(),
        interval=st.sampled_from(["day", "week", "month"]),
        names=st.none(),
    ).flatmap(with_names)


def bound(world: World, given: date | datetime | None, tz: str, *, end: bool) -> datetime | None:
    """A window bound as an instant: a date is a day in ``tz``; PostgreSQL agrees."""
    if given is None or isinstance(given, datetime):
        return given
    zone = ZoneInfo(tz)
    instant = (day_end(given, zone) if end else day_start(given, zone)).astimezone(UTC)
    assert instant == world.zone_day(given, tz, end=end), (given, tz, end)
    return instant


def as_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [normalized(row) for row in frame.iter_rows(named=True)]


ZEROS = dict.fromkeys(SERIES_FIELDS, 0)


def check_query(world: World, unit: str, built: Layout, query: Query) -> None:
    """Aggregate, totals, time series and pages of ``query`` equal the SQL references."""
    start = bound(world, query.start, query.tz, end=False)
    end = bound(world, query.end, query.tz, end=True)
    if start is not None and end is not None and start > end:
        start, end = end, start
    key, group_by = f"utm_{query.group_by}", query.group_by
    filters = Filters.of(**query.filters)
    lo, hi = queries.window_rows(built.times, start, end)

    rows = dashboards.campaign_rows(
        built, group_by=group_by, lo=lo, hi=hi, filters=filters
    ).collect()
    expected = world.reference_filtered_campaigns(unit, key, start, end, query.filters)
    assert as_rows(rows) == expected

    got_totals = totals(built, group_by=group_by, lo=lo, hi=hi, filters=filters)
    assert as_rows(got_totals) == [world.reference_totals(unit, key, start, end, query.filters)]
    assert got_totals.item(0, "values") == rows.height

    leading = leading_names(built, group_by=group_by, lo=lo, hi=hi, filters=filters)
    assert leading == top_names(rows)
    names = leading if query.names is None else query.names
    span = event_span(built, group_by=group_by, lo=lo, hi=hi, filters=filters)
    first = start or (span[0] if span else None)
    last = end or (span[1] if span else None)
    zone = ZoneInfo(query.tz)
    starts = (
        [] if first is None or last is None else bucket_starts(zone, query.interval, first, last)
    )
    series = timeseries(
        built,
        group_by=group_by,
        lo=lo,
        hi=hi,
        filters=filters,
        names=names,
        edges=bucket_edges(starts, zone, query.interval),
    )
    reference = world.reference_timeseries(
        unit, key, start, end, query.filters, query.tz, query.interval
    )
    charted = [name for name in dict.fromkeys(names) if name]
    assert series.height == len(charted) * len(starts)
    cells = {(name, bucket): row for name, bucket, *row in series.iter_rows()}
    for name in charted:
        for index, bucket_start in enumerate(starts):
            got = normalized(dict(zip(SERIES_FIELDS, cells[name, index], strict=True)))
            wanted = reference.pop((name, bucket_start.date().isoformat()), ZEROS)
            assert got == wanted, (name, bucket_label(bucket_start, query.tz))
    assert not {cell for cell in reference if cell[0] in charted}, "events outside every bucket"

    for name in [*[row["name"] for row in expected[:3]], "nope"]:
        value = value_rows(built, group_by=group_by, name=name, lo=lo, hi=hi, filters=filters)
        for offset, limit in ((0, 500), (0, 1), (1, 2), (3, 500)):
            page = lead_page(built, rows=value, offset=offset, limit=limit)
            leads, total = world.reference_lead_page(
                unit, key, name, start, end, query.filters, offset, limit
            )
            assert (page.total, as_rows(page.leads)) == (total, leads), (name, offset, limit)


def chunked(built: Layout, at: int) -> Layout:
    """``built`` with its events in two chunks, as a layout read from files has them in many."""
    events = pl.concat([built.events.slice(0, at), built.events.slice(at)], rechunk=False)
    return dataclasses.replace(built, events=events)


@contextmanager
def indexing(*, everywhere: bool) -> Iterator[None]:
    """Every key with a value index read whenever it is filtered, or layouts as built."""
    if not everywhere:
        yield
        return
    with (
        patch.object(index_module, "INDEXED_VALUES", -1),
        patch.object(filtering, "INDEX_SHARE", 0),
    ):
        yield


def test_dashboards_equal_straight_sql_on_random_worlds(database_url: str) -> None:
    """On random worlds with events around changes of offset, UTM values that
    need escaping, shared leads and deals and events without a lead: the
    filtered aggregate, totals, time series in several zones and intervals, and
    pages of leads each equal the straight-SQL reference; with value indexes or
    scans, and events in one chunk or several."""
    source = Source(database_url)
    with World.connect(database_url) as world, ThreadPoolExecutor(max_workers=2) as readers:

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(spec=specs(), data=st.data())
        def check(spec: Spec, data: st.DataObject) -> None:
            unit = write(world, spec)
            everywhere = data.draw(st.booleans(), label="indexed")
            with indexing(everywhere=everywhere):
                built = load_unit(source, unit, 1, readers)
                if built.events.height > 1 and data.draw(st.booleans(), label="chunked"):
                    built = chunked(built, data.draw(st.integers(1, built.events.height - 1)))
                for _ in range(4):
                    check_query(world, unit, built, data.draw(queries_of(spec)))

        try:
            check()
        finally:
            source.close()


def test_without_filters_the_aggregate_is_todays(world: World, source: Source) -> None:
    """No filters: the very frame of today's aggregate; filters on the grouped
    key alone: its rows of those values."""
    unit = world.org_unit()
    for campaign, hours in (("a", 0), ("b", 1), ("a", 30), ("c", 50)):
        world.event(unit, campaign=campaign, source="s", occurred_at=T0 + timedelta(hours=hours))
    with ThreadPoolExecutor(max_workers=2) as readers:
        built = load_unit(source, unit, 1, readers)
    lo, hi = queries.window_rows(built.times, T0 + timedelta(hours=1), None)
    today = queries.campaign_rows(built, group_by="campaign", lo=lo, hi=hi).collect()
    assert (
        dashboards.campaign_rows(built, group_by="campaign", lo=lo, hi=hi).collect().equals(today)
    )
    only = dashboards.campaign_rows(
        built, group_by="campaign", lo=lo, hi=hi, filters=Filters.of(campaign=["c", "zz"])
    )
    assert only.collect().equals(today.filter(pl.col("name") == "c"))
    assert passing_rows(built, Filters(), lo, hi).to_list() == list(range(lo, hi))
    money = totals(built, group_by="campaign", lo=lo, hi=hi)
    assert money.schema["pipeline_value"] == MONEY


def spelled_out(start: datetime, tz_name: str) -> str:
    """A bucket's label, field by field (what :func:`bucket_label` must say)."""
    offset = start.utcoffset()
    assert offset is not None
    text = (
        f"{start.year:04d}-{start.month:02d}-{start.day:02d}"
        f"T{start.hour:02d}:{start.minute:02d}:{start.second:02d}"
    )
    if start.microsecond:
        text += f".{start.microsecond:06d}"
    if tz_name == "UTC":
        return text + "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes, seconds = divmod(int(abs(offset).total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    return text + f"{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")


@settings(max_examples=300, deadline=None)
@given(
    instant=st.datetimes(
        datetime(1, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive; timezones= makes them UTC
        datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    tz=st.sampled_from(
        [
            "UTC",
            "Europe/Amsterdam",
            "America/New_York",
            "Asia/Kolkata",
            "Africa/Monrovia",
            "Australia/Lord_Howe",
            "Pacific/Kiritimati",
            "America/Sao_Paulo",
            "Europe/Dublin",
        ]
    ),
)
def test_a_bucket_label_spells_out_every_field(instant: datetime, tz: str) -> None:
    """Any instant in any zone, local mean time and years before 1000 included."""
    start = instant.astimezone(ZoneInfo(tz))
    assert bucket_label(start, tz) == spelled_out(start, tz)
