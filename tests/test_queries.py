"""The layout and the pure queries, on small in-memory frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kenbun_analytics.layout import (
    ACCOUNT_DEALS,
    LEAD_FACTS,
    RAW_EVENTS,
    Dictionaries,
    Layout,
    build,
    encode,
    encode_events,
)
from kenbun_analytics.queries import campaign_leads, campaign_rows, window_rows

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def day(n: int | timedelta) -> datetime:
    """Midnight of day ``n`` after T0, or T0 plus a duration."""
    return T0 + (n if isinstance(n, timedelta) else timedelta(days=n))


def layout(events: list[tuple[str | None, str | None, int | timedelta, int]]) -> Layout:
    """Events of (campaign, lead_id, day, points); leads L1 (MQL, account A1), L2 (account A1), L3."""
    raw = pl.DataFrame(
        [
            {
                "event_id": i,
                "occurred_at": day(d),
                "lead_id": lead,
                "campaign": c,
                "source": None,
                "medium": None,
                "points": p,
            }
            for i, (c, lead, d, p) in enumerate(events)
        ],
        schema=RAW_EVENTS,
    ).sort("occurred_at", "event_id")
    base, dictionaries = encode_events(raw, Dictionaries.empty())
    blank = dict.fromkeys(LEAD_FACTS.names())
    leads = pl.DataFrame(
        [
            {**blank, "lead_id": lead, "is_mql": mql, "account_id": account, "score": 1}
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
    return build(base, dictionaries, leads, accounts)


def rows(
    built: Layout, start: int | timedelta | None = None, end: int | timedelta | None = None
) -> list[tuple[Any, ...]]:
    lo, hi = window_rows(
        built.events.get_column("occurred_at"),
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
    ],
)
def test_campaign_rows(
    events: list[Any], window: tuple[int | None, int | None], expected: list[tuple[Any, ...]]
) -> None:
    """Counts, distinct leads (also when a pair's earlier events fall before the window), MQLs, points, deals once."""
    assert rows(layout(events), *window) == expected


MOMENTS = st.integers(0, 4 * 24).map(lambda hours: timedelta(hours=hours)) | st.integers(
    0, 4 * 86_400_000_000
).map(lambda micros: timedelta(microseconds=micros))


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
    assert rows(layout(events), start, end) == expected


def test_campaign_leads_orders_and_limits() -> None:
    """Most recent first touch first, lead_id breaking ties, capped by limit."""
    built = layout([("a", "L2", 0, 0), ("a", "L1", 0, 0), ("a", "L3", 1, 0), ("b", "L4", 1, 0)])
    code = built.codes["campaign"]["a"]
    frame = campaign_leads(
        built.events,
        built.leads,
        rows=built.indexes["campaign"].rows_of(code, 0, built.events.height),
        limit=2,
    )
    assert [tuple(r) for r in frame.select("lead_id", "score").iter_rows()] == [
        ("L3", 1),
        ("L1", 1),
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
def test_value_index_finds_a_values_rows_in_a_window(
    value: str, lo: int, hi: int, expected: list[int]
) -> None:
    """The index gives exactly the rows of one value inside [lo, hi)."""
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
    code = built.codes["campaign"][value]
    assert built.indexes["campaign"].rows_of(code, lo, hi).to_list() == expected


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
    occurred = pl.Series([day(0), day(1), day(2), day(3)])
    assert (
        window_rows(
            occurred, None if start is None else day(start), None if end is None else day(end)
        )
        == expected
    )
