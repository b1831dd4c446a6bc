"""The layout and the pure queries, on small in-memory frames."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kenbun_analytics.engine import index as index_module
from kenbun_analytics.engine import previous as previous_module
from kenbun_analytics.engine.codes import Dictionaries, encode, encode_events, uuid_key, uuid_text
from kenbun_analytics.engine.days import compact_days, summable_days
from kenbun_analytics.engine.frames import (
    ACCOUNT_DEALS,
    LEAD_FACTS,
    LEAD_KEY,
    MONEY,
    RAW_EVENTS,
    Narrower,
    previous_day,
)
from kenbun_analytics.engine.layout import Layout, base_of, build, derive
from kenbun_analytics.engine.patch import patch as patch_layout
from kenbun_analytics.engine.queries import campaign_leads, campaign_rows, window_rows
from kenbun_analytics.engine.times import Times

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOURS = timedelta(hours=1)


def day(n: int | timedelta) -> datetime:
    """Midnight of day ``n`` after T0, or T0 plus a duration."""
    return T0 + (n if isinstance(n, timedelta) else timedelta(days=n))


Event = tuple[str | None, str | None, str | None, "int | timedelta", int]
"""(campaign, source, lead_id, day or time after T0, points)"""


def lead_key(lead: str | None) -> int | None:
    """A stand-in uuid for a short lead name: its bytes as a 128-bit integer."""
    return None if lead is None else int.from_bytes(lead.encode().ljust(16, b"\0"), "big")


def raw_events(events: Mapping[int, Event]) -> pl.DataFrame:
    """Raw events by event id, sorted by time as a load gives them."""
    return pl.DataFrame(
        [
            {
                "event_id": i,
                "occurred_at": day(at),
                "lead_key": lead_key(lead),
                "campaign": campaign,
                "source": source,
                "medium": None,
                "points": points,
            }
            for i, (campaign, source, lead, at, points) in events.items()
        ],
        schema=RAW_EVENTS,
    ).sort("occurred_at", "event_id")


def as_read(events: dict[int, Event]) -> pl.DataFrame:
    """Raw events in another order than their times (a read by id gives no order)."""
    return raw_events(events).sort("event_id", descending=True)


def facts() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Leads L1 (MQL, account A1), L2 (account A1), L3; A1 has two deals worth 100.50."""
    blank = dict.fromkeys(LEAD_FACTS.names())
    leads = pl.DataFrame(
        [
            {
                **blank,
                "lead_key": lead_key(lead),
                "is_mql": mql,
                "account_id": account,
                "score": 1,
            }
            for lead, mql, account in (("L1", True, "A1"), ("L2", False, "A1"), ("L3", False, None))
        ],
        schema=LEAD_FACTS,
    )
    accounts = pl.DataFrame(
        [
            {
                "account_id": "A1",
                "deals_count": 2,
                "pipeline_value": Decimal("100.50"),
                "closed_won_value": Decimal(0),
            }
        ],
        schema=ACCOUNT_DEALS,
    )
    return leads, accounts


def derived_again(layout: Layout) -> Layout:
    """``layout`` derived afresh from its own base events, leads and accounts."""
    return derive(
        base_of(layout), layout.dictionaries, layout.leads, layout.accounts, details=layout.details
    )


def built_from(raw: pl.DataFrame) -> Layout:
    base, dictionaries = encode_events(raw, Dictionaries.empty())
    return build(base, dictionaries, *facts())


def layout(events: Sequence[tuple[str | None, str | None, int | timedelta, int]]) -> Layout:
    """Events of (campaign, lead_id, day, points), with the leads of :func:`facts`."""
    return built_from(
        raw_events(
            {
                i: (campaign, None, lead, at, points)
                for i, (campaign, lead, at, points) in enumerate(events)
            }
        )
    )


def rows(
    built: Layout, start: int | timedelta | None = None, end: int | timedelta | None = None
) -> list[tuple[Any, ...]]:
    lo, hi = window_rows(
        built.times,
        None if start is None else day(start),
        None if end is None else day(end),
    )
    frame = campaign_rows(built, group_by="campaign", lo=lo, hi=hi)
    columns = (
        "name",
        "total_events",
        "unique_leads",
        "mql_count",
        "total_points",
        "deals_count",
        "pipeline_value",
    )
    return [tuple(row) for row in frame.select(columns).collect().iter_rows()]


@pytest.mark.parametrize(
    ("events", "window", "expected"),
    [
        ([], (None, None), []),
        (
            [("a", "L1", 0, 1), ("a", "L1", 1, 2), ("a", None, 0, 3)],
            (None, None),
            [("a", 3, 1, 1, 6, 2, Decimal("100.50"))],
        ),
        (
            [("a", "L2", 0, 0), ("b", "L1", 0, 0), ("b", "L3", 0, 0)],
            (None, None),
            [("b", 2, 2, 1, 0, 2, Decimal("100.50")), ("a", 1, 1, 0, 0, 2, Decimal("100.50"))],
        ),
        (
            [("a", "L1", 0, 0), ("a", "L2", 0, 0)],
            (None, None),
            [("a", 2, 2, 1, 0, 2, Decimal("100.50"))],
        ),
        ([("x", "unknown", 0, 5)], (None, None), [("x", 1, 1, 0, 5, 0, Decimal(0))]),
        (
            [("a", "L1", 0, 1), ("a", "L1", 2, 1), ("a", "L1", 4, 1)],
            (1, 3),
            [("a", 1, 1, 1, 1, 2, Decimal("100.50"))],
        ),
        (
            [("a", "L1", 0, 1), ("a", "L1", 2, 1), ("a", "L1", 4, 1)],
            (3, None),
            [("a", 1, 1, 1, 1, 2, Decimal("100.50"))],
        ),
        ([("a", "L1", 0, 1), ("a", "L1", 2, 1)], (3, 5), []),
        # Windows starting in the middle of a day with events on both sides:
        # a pair's previous event on that day may lie before the start or not.
        (
            [("a", "L1", HOURS * 10, 1), ("a", "L1", HOURS * 14, 1), ("a", "L1", HOURS * 50, 1)],
            (HOURS * 12, None),
            [("a", 2, 1, 1, 2, 2, Decimal("100.50"))],
        ),
        (
            [("a", "L1", HOURS * 10, 1), ("a", "L2", HOURS * 13, 1), ("a", "L1", HOURS * 50, 1)],
            (HOURS * 12, None),
            [("a", 2, 2, 1, 2, 2, Decimal("100.50"))],
        ),
        (
            [("a", "L1", HOURS * 10, 1), ("a", "L2", HOURS * 13, 1), ("a", "L1", HOURS * 50, 1)],
            (HOURS * 12, HOURS * 60),
            [("a", 2, 2, 1, 2, 2, Decimal("100.50"))],
        ),
        (
            [("a", "L3", HOURS * 10, 1), ("a", "L1", HOURS * 13, 1), ("a", "L1", HOURS * 50, 1)],
            (HOURS * 12, None),
            [("a", 2, 1, 1, 2, 2, Decimal("100.50"))],
        ),
        (
            [("a", "L2", HOURS * 10, 0), ("a", "L3", HOURS * 13, 0), ("a", "L1", HOURS * 50, 0)],
            (HOURS * 12, None),
            [("a", 2, 2, 1, 0, 2, Decimal("100.50"))],
        ),
        (
            [("a", "L2", HOURS * 10, 0), ("a", "L2", HOURS * 13, 0), ("a", "L1", HOURS * 50, 0)],
            (HOURS * 12, None),
            [("a", 2, 2, 1, 0, 2, Decimal("100.50"))],
        ),
    ],
)
def test_campaign_rows(
    events: list[Any], window: tuple[int | None, int | None], expected: list[tuple[Any, ...]]
) -> None:
    """Counts, distinct leads (also when a pair's earlier events fall before the
    window, on an earlier day or earlier the same day), MQLs, points, deals once."""
    assert rows(layout(events), *window) == expected


MOMENTS = st.integers(0, 4 * 24).map(lambda hours: timedelta(hours=hours)) | st.integers(
    0, 4 * 86_400_000_000
).map(lambda micros: timedelta(microseconds=micros))


WIDTHS = pytest.mark.parametrize(
    "day_types", [previous_module.DAY_TYPES, ()], ids=["one-byte days", "four-byte days"]
)
"""The previous-day columns as narrow as the events allow, and as wide as they
get (a snapshot spanning 179 years): the queries read either alike."""


@WIDTHS
@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", None]),
            st.sampled_from(["L1", "L2", "L3", "L4", None]),
            MOMENTS,
            st.integers(-3, 3),
        ),
        max_size=30,
    ),
    start=st.none() | MOMENTS,
    end=st.none() | MOMENTS,
)
def test_whole_days_and_partial_days_add_up_to_the_events(
    day_types: Narrower,
    events: list[tuple[str | None, str | None, timedelta, int]],
    start: timedelta | None,
    end: timedelta | None,
) -> None:
    """Windows starting and ending anywhere in a day, with pairs seen before the
    window coming back in its whole days, equal counting the events one by one."""
    accounts = {"L1": "A1", "L2": "A1"}
    inside = [
        (campaign, lead, points)
        for campaign, lead, at, points in events
        if campaign is not None and (start is None or at >= start) and (end is None or at <= end)
    ]
    expected = []
    for campaign in sorted({c for c, _, _ in inside}):
        mine = [(lead, points) for c, lead, points in inside if c == campaign]
        leads = {lead for lead, _ in mine if lead is not None}
        reaches_deals = any(accounts.get(lead) == "A1" for lead in leads)
        expected.append(
            (
                campaign,
                len(mine),
                len(leads),
                len(leads & {"L1"}),
                sum(points for _, points in mine),
                2 if reaches_deals else 0,
                Decimal("100.50") if reaches_deals else Decimal(0),
            )
        )
    expected.sort(key=lambda row: (-row[1], row[0]))
    with patch.object(previous_module, "DAY_TYPES", day_types):
        built = layout(events)
    assert built.events.schema[previous_day("campaign", "lead")] == (
        pl.UInt8 if day_types else pl.UInt32
    )
    assert rows(built, start, end) == expected


def aggregate(built: Layout, key: str, since: timedelta | None) -> list[tuple[Any, ...]]:
    """The aggregate by ``key`` of the events from T0 + ``since`` on."""
    lo, hi = window_rows(built.times, None if since is None else day(since), None)
    return campaign_rows(built, group_by=key, lo=lo, hi=hi).collect().rows()


EVENTS = st.tuples(
    st.sampled_from(["a", "b", None]),
    st.sampled_from(["s", "t", None]),
    st.sampled_from(["L1", "L2", "L3", "L4", "L5", None]),
    MOMENTS,
    st.integers(-3, 3),
)


WIDE_DAYS = pl.Schema(
    {
        "day": pl.Int32(),
        "campaign": pl.UInt16(),
        "total_events": pl.Int32(),
        "total_points": pl.Int64(),
        "first_event_at": pl.Datetime("us", "UTC"),
        "last_event_at": pl.Datetime("us", "UTC"),
        "new_leads": pl.Int32(),
        "new_mqls": pl.Int32(),
        "deals_count": pl.Int64(),
        "pipeline_value": MONEY,
        "closed_won_value": MONEY,
    }
)
"""Day totals as :func:`kenbun_analytics.engine.days.day_totals` makes them."""
COUNT = st.integers(0, (1 << 31) - 1)
MONEYS = st.decimals(-(10**35), 10**35, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 60_000) | st.integers(-(1 << 31), (1 << 31) - 1),
            COUNT,
            st.integers(-(1 << 63), (1 << 63) - 1),
            COUNT,
            st.integers(0, (1 << 63) - 1),
            st.integers(-(10**16), 10**16).map(lambda cents: Decimal(cents).scaleb(-2)) | MONEYS,
        ),
        max_size=6,
    )
)
# -2^63 cents is the smallest a 64-bit integer holds: held as cents.
@example(rows=[(0, 0, 0, 0, 0, Decimal("-92233720368547758.08"))])
def test_day_totals_are_held_narrow_and_given_back_exactly(
    rows: list[tuple[int, int, int, int, int, Decimal]],
) -> None:
    """Any day totals survive being held narrow; each column takes the
    narrowest type holding its values, and money is held as cents while every
    sum fits in 64 bits."""
    wide = pl.DataFrame(
        [
            {
                "day": at,
                "campaign": 1,
                "total_events": count,
                "total_points": points,
                "first_event_at": T0,
                "last_event_at": T0,
                "new_leads": leads,
                "new_mqls": leads,
                "deals_count": deals,
                "pipeline_value": money,
                "closed_won_value": -money,
            }
            for at, count, points, leads, deals, money in rows
        ],
        schema=WIDE_DAYS,
    )
    narrow = compact_days(wide)
    assert summable_days(narrow).equals(summable_days(wide))
    assert compact_days(summable_days(wide)).equals(narrow)
    for name, dtype in narrow.schema.items():
        assert _width(dtype) <= _width(WIDE_DAYS[name])
    cents = [money.scaleb(2) for *_, money in rows]
    fits = all(-(1 << 63) <= value < 1 << 63 for value in cents)
    assert narrow.schema["pipeline_value"] == (pl.Int64 if fits else MONEY)
    if rows and max(count for _, count, *_ in rows) < 1 << 16:
        assert narrow.schema["total_events"] in {pl.UInt8, pl.UInt16}


BYTES: dict[type[pl.DataType], int] = {
    pl.Int8: 1,
    pl.UInt8: 1,
    pl.Int16: 2,
    pl.UInt16: 2,
    pl.Int32: 4,
    pl.UInt32: 4,
}


def _width(dtype: pl.DataType) -> int:
    """The bytes a value of ``dtype`` takes."""
    return 16 if dtype == MONEY else BYTES.get(dtype.base_type(), 8)


def test_day_totals_sum_money_past_64_bits_exactly() -> None:
    """Whole days' money summed as cents past 2**63, and held as decimals when
    one day's sum is past it, answers exactly."""
    leads, _ = facts()
    leads = leads.with_columns(
        pl.when(pl.col("lead_key") == lead_key("L2"))
        .then(pl.lit("A2"))
        .otherwise(pl.col("account_id"))
        .alias("account_id")
    )
    raw = raw_events({1: ("a", "s", "L1", 0, 1), 2: ("a", "s", "L2", 1, 1)})
    base, dictionaries = encode_events(raw, Dictionaries.empty())
    for big, held in ((Decimal("50000000000000000.00"), pl.Int64), (Decimal(10**17), MONEY)):
        accounts = pl.DataFrame(
            [
                {"account_id": "A1", "deals_count": 1, "pipeline_value": big},
                {"account_id": "A2", "deals_count": 3, "pipeline_value": big + Decimal("0.01")},
            ],
            schema=ACCOUNT_DEALS,
        ).with_columns(closed_won_value=pl.col("pipeline_value"))
        built = build(base, dictionaries, leads, accounts)
        assert built.days["campaign"].schema["pipeline_value"] == held
        assert built.days["campaign"].schema["deals_count"] == pl.UInt8
        (row,) = aggregate(built, "campaign", None)
        assert row[5:8] == (4, 2 * big + Decimal("0.01"), 2 * big + Decimal("0.01"))
        assert (
            aggregate(built, "campaign", timedelta(days=1))[0][5:8]
            == (3,) + (big + Decimal("0.01"),) * 2
        )


def test_event_ids_take_four_bytes_below_two_to_the_32() -> None:
    """Ids below 2**32 are held as UInt32; a patch bringing a larger id widens
    them, and changing or deleting events by id works on either width."""
    big = 1 << 32
    old = built_from(raw_events({1: ("a", "s", "L1", 0, 1), 2: ("a", "s", "L2", 1, 1)}))
    assert old.events.schema["event_id"] == pl.UInt32
    arrived = patch_layout(
        old, pl.Series("event_id", [big], dtype=pl.Int64), raw_events({big: ("b", "s", "L1", 2, 1)})
    )
    assert arrived is not None
    assert arrived.events.schema["event_id"] == pl.Int64
    assert_derived_alike(arrived)
    changed = patch_layout(
        arrived,
        pl.Series("event_id", [1, big], dtype=pl.Int64),
        raw_events({1: ("b", "s", "L1", 0, 1)}),
    )
    assert changed is not None
    assert changed.events.schema["event_id"] == pl.UInt32
    assert_derived_alike(changed)
    assert [row[:2] for row in aggregate(changed, "campaign", None)] == [("a", 1), ("b", 1)]
    # An id the narrow column cannot hold changes nothing in it.
    unchanged = patch_layout(old, pl.Series("event_id", [big, -1], dtype=pl.Int64), raw_events({}))
    assert unchanged is not None
    assert_same_events(unchanged, old)


def assert_derived_alike(patched: Layout) -> None:
    assert_same_events(patched, derived_again(patched))


def assert_same_events(got: Layout, expected: Layout) -> None:
    """The same event columns and the same times, part for part."""
    assert got.events.equals(expected.events)
    for part in ("offsets", "buckets", "starts"):
        assert getattr(got.times, part).equals(getattr(expected.times, part)), part


@settings(max_examples=50, deadline=None)
@given(events=st.dictionaries(st.integers(0, 40), EVENTS, max_size=25))
def test_packed_and_stable_orderings_build_the_same_layout(events: dict[int, Event]) -> None:
    """Pair indices and value indexes are the same whether (key, row) fit one integer."""
    packed = built_from(raw_events(events))
    with patch.object(index_module, "PACKED_BITS", 0):
        stable = built_from(raw_events(events))
    assert packed.events.equals(stable.events)
    assert packed.indexes.keys() == stable.indexes.keys()
    for key, index in stable.indexes.items():
        assert packed.indexes[key].rows.equals(index.rows)
        assert packed.indexes[key].offsets.equals(index.offsets)


def test_lead_facts_are_in_lead_code_order_without_keys_of_their_own() -> None:
    """The leads frame has a row per lead code and no key column: a lead's key
    is the lead_key dictionary's at its code, through a patch that adds leads too."""
    built = layout([("a", "L2", 0, 0), ("a", "L1", 1, 0), ("b", None, 1, 0)])
    added = patch_layout(
        built,
        pl.Series("event_id", [9], dtype=pl.Int64),
        raw_events({9: ("b", None, "L5", 2, 0)}),
    )
    assert added is not None
    for checked in (built, added):
        assert checked.leads.columns == ["is_mql", "account"]
        assert checked.leads.height == checked.dictionaries.lead_key.len()
        assert checked.details.height == checked.dictionaries.lead_key.len()
    # L1 is an MQL (facts()), L2 is not, and L5 has no facts here; L1 and L2
    # have account A1 and a score of 1.
    keys = added.dictionaries.lead_key.to_list()
    mql = dict(zip(keys, added.leads.get_column("is_mql"), strict=True))
    assert mql[lead_key("L1")] is True
    assert mql[lead_key("L2")] is False
    assert mql[lead_key("L5")] is None
    details = added.details.frame().select("account_id", "score").rows()
    by_key = dict(zip(keys, details, strict=True))
    assert by_key[lead_key("L1")] == by_key[lead_key("L2")] == ("A1", 1)
    assert by_key[lead_key("L5")] == (None, None)


def test_campaign_leads_orders_and_limits() -> None:
    """Most recent first touch first, lead_id breaking ties, capped by limit."""
    built = layout([("a", "L2", 0, 0), ("a", "L1", 0, 0), ("a", "L3", 1, 0), ("b", "L4", 1, 0)])
    code = built.codes["campaign"]["a"]
    frame = campaign_leads(
        built, rows=built.rows_of("campaign", code, 0, built.events.height), limit=2
    )
    assert [tuple(r) for r in frame.select("lead_id", "score").iter_rows()] == [
        (str(uuid.UUID(int=lead_key("L3"))), 1),
        (str(uuid.UUID(int=lead_key("L1"))), 1),
    ]


@pytest.mark.parametrize(
    ("value", "lo", "hi", "expected"),
    [
        ("a", 0, 6, [0, 2, 5]),
        ("a", 1, 5, [2]),
        ("a", 3, 5, []),
        ("b", 0, 6, [1, 4]),
        ("c", 0, 6, [3]),
    ],
)
@pytest.mark.parametrize("indexed_values", [-1, index_module.INDEXED_VALUES])
def test_rows_of_finds_a_values_rows_in_a_window(
    indexed_values: int, value: str, lo: int, hi: int, expected: list[int]
) -> None:
    """The index, or the scan of a key without one, gives exactly the rows of
    one value inside [lo, hi)."""
    with patch.object(index_module, "INDEXED_VALUES", indexed_values):
        built = layout(
            [
                ("a", None, 0, 0),
                ("b", None, 1, 0),
                ("a", None, 2, 0),
                ("c", None, 3, 0),
                ("b", None, 4, 0),
                ("a", None, 5, 0),
                (None, None, 6, 0),
            ]
        )
    assert ("campaign" in built.indexes) == (indexed_values < 0)
    code = built.codes["campaign"][value]
    rows = built.rows_of("campaign", code, lo, hi)
    assert rows.dtype == pl.UInt32
    assert rows.to_list() == expected
    assert built.rows_of("campaign", None, lo, hi).to_list() == []


def test_lead_keys_encode_row_for_row_around_nulls() -> None:
    """Keys beyond 64 bits, nulls among them: each row gets its key's code, nulls none."""
    known, new = 2**127 + 1, 2**128 - 1
    codes, names = encode(
        pl.Series("lead_key", [new, None, known, new, None], dtype=LEAD_KEY),
        pl.Series("lead_key", [known], dtype=LEAD_KEY),
    )
    assert codes.to_list() == [1, None, 0, 1, None]
    assert names.to_list() == [known, new]


def test_uuid_keys_round_trip_to_their_text() -> None:
    """16-byte uuids become 128-bit keys and back to PostgreSQL's text form."""
    texts = ["2a5f3e9c-0260-4b58-ce6d-3f8e1ae55746", "00000000-0000-0000-0000-000000000001"]
    binary = pl.Series("k", [uuid.UUID(text).bytes for text in texts] + [None], dtype=pl.Binary)
    keys = binary.to_frame().select(uuid_key(pl.col("k"))).to_series()
    assert keys.to_list() == [uuid.UUID(text).int for text in texts] + [None]
    assert uuid_text(keys).to_list() == [*texts, None]


def test_dictionaries_are_append_only() -> None:
    """Known texts keep their codes; new texts are appended."""
    names = pl.Series("n", ["b", "a"])
    codes, names = encode(pl.Series(["a", None, "c", "b", "c"]), names)
    assert codes.to_list() == [1, None, 2, 0, 2]
    assert names.to_list() == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(None, None, (0, 4)), (1, 2, (1, 3)), (5, None, (4, 4)), (None, -1, (0, 0)), (2, 1, (2, 2))],
)
def test_window_rows_are_inclusive_binary_searches(
    start: int | None, end: int | None, expected: tuple[int, int]
) -> None:
    """Both bounds include equal timestamps."""
    times = Times.of(pl.Series([day(0), day(1), day(2), day(3)]))
    assert (
        window_rows(times, None if start is None else day(start), None if end is None else day(end))
        == expected
    )
