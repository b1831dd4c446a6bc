"""Parameter parsing, as pure functions."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from kenbun_analytics.errors import BadRequest, InvalidDate
from kenbun_analytics.web.params import (
    campaign_name_from_raw_path,
    drilldown_campaign_name,
    given_values,
    group_by_column,
    parse_bound,
)


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-03-01", False, utc(2026, 3, 1)),
        ("2026-03-31", True, utc(2026, 3, 31, 23, 59, 59, 999999)),
        ("2026-03-01T08:14:22Z", False, utc(2026, 3, 1, 8, 14, 22)),
        ("2026-03-01t08:14:22z", False, utc(2026, 3, 1, 8, 14, 22)),
        ("2026-03-01T10:00:00+02:00", False, utc(2026, 3, 1, 8)),
        ("2026-03-01T10:00:00 02:00", False, utc(2026, 3, 1, 8)),
        ("2026-03-01T00:00:00-05:30", False, utc(2026, 3, 1, 5, 30)),
        ("2026-03-01T00:00:00.5Z", False, utc(2026, 3, 1, 0, 0, 0, 500000)),
        ("2026-03-01T00:00:00.1234561Z", False, utc(2026, 3, 1, 0, 0, 0, 123457)),
        ("2026-03-01T00:00:00.1234569Z", True, utc(2026, 3, 1, 0, 0, 0, 123456)),
        ("2026-03-01T00:00:00.1234560000Z", False, utc(2026, 3, 1, 0, 0, 0, 123456)),
        ("2024-02-29", False, utc(2024, 2, 29)),
        (None, False, None),
    ],
)
def test_bounds(text: str | None, end: bool, expected: datetime | None) -> None:
    """Dates are whole UTC days; timestamps convert to UTC; sub-microseconds round inwards."""
    assert parse_bound("start_date", text, end=end) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-02-29",
        "2026-03-01T00:00:00",
        "2026-03-01 00:00",
        "03/01/2026",
        "2026-03-01Z",
        "2026-03-01T00:00:00+2:00",
        "2026-03-01T00:00:00.Z",
        "9999-12-31T23:59:59-01:00",
        "now",
    ],
)
def test_invalid_bounds(text: str) -> None:
    """Anything else is an InvalidDate that names the parameter."""
    with pytest.raises(InvalidDate, match="end_date"):
        parse_bound("end_date", text, end=True)


@pytest.mark.parametrize(
    ("value", "column"),
    [
        ("campaign", "campaign"),
        ("source", "source"),
        ("medium", "medium"),
        (None, "campaign"),
        ("", "campaign"),
        ("SOURCE", "campaign"),
        (" source", "campaign"),
    ],
)
def test_group_by(value: str | None, column: str) -> None:
    """Exactly campaign, source or medium; anything else is campaign."""
    assert group_by_column(value) == column


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"/analytics/campaigns/spring/leads", "spring"),
        (b"/analytics/campaigns/a%2Fb/leads", "a/b"),
        (b"/analytics/campaigns/a%252Fb/leads", "a%2Fb"),
        (b"/analytics/campaigns/c+d/leads", "c+d"),
        (b"/analytics/campaigns/caf%C3%A9%20%E2%98%95/leads?x=1", "caf\u00e9 \u2615"),
        (b"/analytics/campaigns/50%25/leads", "50%"),
        (b"/analytics/campaigns/a/b/leads", "a/b"),
        (b"/analytics/campaigns/%2E/leads", "."),
        (b"/analytics/campaigns/%2e%2E/leads", ".."),
        (b"/analytics/campaigns/./leads", "."),
        (b"/analytics/campaigns/.../leads", "..."),
        (b"/analytics/campaigns/spring", None),
        (b"/analytics/campaigns/leads", None),
    ],
)
def test_campaign_name_is_decoded_once_from_the_raw_path(raw: bytes, name: str | None) -> None:
    """The raw path keeps %2F, so a value holding a slash reaches its drilldown."""
    assert campaign_name_from_raw_path(raw) == name


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"/analytics/campaigns//leads", "campaign_name is required"),
        (b"/analytics/campaigns/%C3/leads", "UTF-8"),
        (b"/analytics/campaigns/50%/leads", "write '%' as %25"),
        (b"/analytics/campaigns/%G1/leads", "write '%' as %25"),
        (b"/analytics/campaigns/a%0/leads", "write '%' as %25"),
        (b"/analytics/campaigns/%00/leads", "NUL"),
    ],
)
def test_bad_campaign_names(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        campaign_name_from_raw_path(raw)


@pytest.mark.parametrize(
    ("query", "given"),
    [
        ({}, {}),
        ({"group_by": ["source"], "other": ["x", "y"]}, {"group_by": "source"}),
        ({"start_date": [""], "end_date": [""], "group_by": [""]}, {}),
        ({"start_date": ["", ""]}, {}),
        ({"start_date": ["", "2026-03-01"]}, {"start_date": "2026-03-01"}),
        ({"end_date": ["2026-03-31", ""]}, {"end_date": "2026-03-31"}),
        ({"start_date": [" "]}, {"start_date": " "}),
    ],
)
def test_an_empty_value_is_no_value(query: dict[str, list[str]], given: dict[str, str]) -> None:
    """Empty values are dropped first: what is left is each parameter's one value."""
    assert given_values(query) == given


@pytest.mark.parametrize(
    "query",
    [
        {"group_by": ["campaign", "source"]},
        {"start_date": ["2026-03-01", "", "2026-03-01"]},
        {"end_date": ["", "a", "b"]},
    ],
)
def test_two_values_of_a_parameter_are_a_bad_request(query: dict[str, list[str]]) -> None:
    with pytest.raises(BadRequest, match="given more than once"):
        given_values(query)


@pytest.mark.parametrize(
    ("raw", "named", "name"),
    [
        (b"/analytics/campaigns/leads", ["."], "."),
        (b"/analytics/campaigns/leads?campaign_name=..", ["..", ""], ".."),
        (b"/analytics/campaigns/leads", ["", "a/b"], "a/b"),
        (b"/analytics/campaigns/spring/leads", ["autumn"], "spring"),
        (b"/analytics/campaigns/leads/leads", ["."], "leads"),
        (b"/analytics/campaigns/spring", ["."], None),
    ],
)
def test_the_query_names_the_value_at_the_named_drilldown_path(
    raw: bytes, named: list[str], name: str | None
) -> None:
    """/analytics/campaigns/leads?campaign_name=<value>: the way to "." and "..";
    elsewhere the path names the value."""
    assert drilldown_campaign_name(raw, named) == name


@pytest.mark.parametrize(
    ("named", "message"),
    [
        ([], "campaign_name is required"),
        ([""], "campaign_name=<value> for '.' and '..'"),
        ([".", ".."], "campaign_name is given more than once"),
        (["\x00"], "NUL"),
    ],
)
def test_bad_named_campaign_names(named: list[str], message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        drilldown_campaign_name(b"/analytics/campaigns/leads", named)
