"""Parsing of request parameters into query arguments; every failure is a BadRequest."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone

from kenbun_analytics.engine.frames import KEYS
from kenbun_analytics.errors import BadRequest, InvalidDate

GROUP_BY_VALUES = KEYS
"""The values of group_by: the UTM keys of the layout."""
WINDOW_PARAMETERS = ("group_by", "start_date", "end_date")
"""The query parameters of both analytics endpoints; each may be given once."""

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
# RFC 3339 date-time. A space before the offset is read as "+": it is what an
# unencoded "+" in a query string turns into.
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+\- ])([0-9]{2}):([0-9]{2}))"
)
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_LEADS_PREFIX = b"/analytics/campaigns/"
_LEADS_SUFFIX = b"/leads"
NAMED_LEADS_PATH = b"/analytics/campaigns/leads"
"""The drilldown of the value the query names (``?campaign_name=``): the way to
the values ``.`` and ``..``, which no URL path holds. URL parsers drop a path
segment ``.`` or ``..`` as a dot segment, spelled ``%2E`` or not (the WHATWG URL
standard every browser follows, RFC 3986's normalization), before sending it."""


def group_by_column(value: str | None) -> str:
    """``campaign``, ``source`` or ``medium``; anything else means ``campaign``."""
    return value if value in GROUP_BY_VALUES else "campaign"


def parse_bound(parameter: str, value: str | None, *, end: bool) -> datetime | None:
    """A window bound in UTC at microsecond precision, both ends inclusive.

    A date is the whole UTC day: its first microsecond as a start, its last as
    an end. Sub-microsecond digits are rounded inwards, so the window never
    takes in a microsecond that the given instant excludes.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        if (match := _DATE.fullmatch(text)) is not None:
            day = date(*(int(part) for part in match.groups()))
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1, microseconds=-1) if end else start
        if (match := _TIMESTAMP.fullmatch(text)) is not None:
            return _timestamp(match, end=end)
    except (ValueError, OverflowError):
        pass
    raise InvalidDate(parameter)


def _timestamp(match: re.Match[str], *, end: bool) -> datetime:
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if zulu:
        offset = UTC
    else:
        hours, minutes = int(off_h), int(off_m)
        if hours > 23 or minutes > 59:
            raise ValueError(off_h)
        delta = timedelta(hours=hours, minutes=minutes)
        offset = timezone(-delta if sign == "-" else delta)
    digits = (fraction or "").ljust(6, "0")
    micros, rest = int(digits[:6]), digits[6:].strip("0")
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micros, offset
    )
    if rest and not end:
        moment += timedelta(microseconds=1)
    return moment.astimezone(UTC)


def parse_window(
    start_date: str | None, end_date: str | None
) -> tuple[datetime | None, datetime | None]:
    start = parse_bound("start_date", start_date, end=False)
    end = parse_bound("end_date", end_date, end=True)
    if start is not None and end is not None and start > end:
        raise BadRequest(
            "start_date is later than end_date: give a start_date on or before the end_date"
        )
    return start, end


def campaign_name_from_raw_path(raw_path: bytes) -> str | None:
    """The drilldown's campaign_name, percent-decoded exactly once.

    Read from the raw request path because ASGI servers decode ``%2F`` into
    ``/`` before routing. None when the path is not a drilldown path.
    """
    path = raw_path.split(b"?", 1)[0]
    if not (
        path.startswith(_LEADS_PREFIX)
        and path.endswith(_LEADS_SUFFIX)
        and len(path) >= len(_LEADS_PREFIX) + len(_LEADS_SUFFIX)
    ):
        return None
    encoded = path[len(_LEADS_PREFIX) : len(path) - len(_LEADS_SUFFIX)]
    if _BAD_ESCAPE.search(encoded):
        raise BadRequest(
            "campaign_name has a '%' that does not start a %XX escape: write '%' as %25"
        )
    try:
        name = urllib.parse.unquote_to_bytes(encoded).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("campaign_name must be UTF-8 text, percent-encoded") from None
    return _valid_name(name)


def drilldown_campaign_name(raw_path: bytes, named: Sequence[str]) -> str | None:
    """The drilldown's campaign_name: from the path (:func:`campaign_name_from_raw_path`)
    or, at :data:`NAMED_LEADS_PATH`, the one value ``named`` by the query's
    campaign_name. None when the path is neither."""
    if raw_path.split(b"?", 1)[0] != NAMED_LEADS_PATH:
        return campaign_name_from_raw_path(raw_path)
    given = given_values({"campaign_name": named}, ("campaign_name",))
    return _valid_name(given.get("campaign_name", ""))


def _valid_name(name: str) -> str:
    if not name:
        raise BadRequest(
            "campaign_name is required: send /analytics/campaigns/<value>/leads, or "
            "/analytics/campaigns/leads?campaign_name=<value> for '.' and '..', "
            "which URLs drop from a path"
        )
    if "\x00" in name:
        raise BadRequest("campaign_name cannot hold a NUL character (%00): no UTM value does")
    return name


def given_values(
    query: Mapping[str, Sequence[str]], names: Sequence[str] = WINDOW_PARAMETERS
) -> dict[str, str]:
    """The value of each of ``names`` given one, by name.

    An empty value is no value: ``start_date=`` (an HTML form's or a BI tool's
    empty field) is the parameter left out, and is dropped before anything else,
    so ``start_date=&start_date=2026-03-01`` gives the date once. A parameter
    given two values (empty ones aside) is ambiguous: say so rather than pick one.
    """
    given: dict[str, str] = {}
    for name in names:
        values = [value for value in query.get(name, ()) if value]
        if len(values) > 1:
            raise BadRequest(f"{name} is given more than once: give it once")
        if values:
            given[name] = values[0]
    return given
