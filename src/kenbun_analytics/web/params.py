"""Parsing of request parameters into query arguments; every failure is a BadRequest."""

from __future__ import annotations

import functools
import re
import urllib.parse
import zoneinfo
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from kenbun_analytics.engine import zones
from kenbun_analytics.engine.filters import Filters
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


# ------------------------------------------------------ dashboards.md --

FILTER_PARAMETERS = {"utm_campaign": "campaign", "utm_source": "source", "utm_medium": "medium"}
"""The filter parameters and the UTM key each filters."""
MAX_FILTER_VALUES = 100
"""Distinct non-empty values one filter parameter may give."""
MAX_NAMES = 20
"""Distinct non-empty values a time series may chart."""
MAX_LIMIT = 500
"""The largest page of leads, and the page without ``limit``."""
SINGLE_PARAMETERS = ("tz", "interval", "limit", "offset", "format")
"""The new single-valued parameters: like the window's, each may be given once."""
NEW_PARAMETERS = frozenset({*FILTER_PARAMETERS, *SINGLE_PARAMETERS, "name"})
"""The parameters of dashboards.md: a request without them is answered as before."""
FORMATS = ("json", "csv", "arrow")
CSV = "text/csv"
ARROW = "application/vnd.apache.arrow.stream"
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*")
"""How the zone database spells a name: no leading '/', no '.' or '..' parts."""


def _given(value: str | None) -> str | None:
    """A single-valued new parameter: empty is the same as absent."""
    return value or None


def parse_filters(query: Mapping[str, list[str]]) -> Filters:
    """The filters of the repeatable ``utm_*`` parameters; empty values ignored."""
    given: dict[str, frozenset[str]] = {}
    for parameter, key in FILTER_PARAMETERS.items():
        values = frozenset(value for value in query.get(parameter, ()) if value)
        if len(values) > MAX_FILTER_VALUES:
            raise BadRequest(
                f"{parameter} is given with more than {MAX_FILTER_VALUES} distinct values: "
                f"give at most {MAX_FILTER_VALUES}"
            )
        given[key] = values
    return Filters.of(**given)


@functools.lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


DEFAULT_TZ = "UTC"


def parse_tz(value: str | None) -> tuple[str, ZoneInfo]:
    """The zone named by ``tz`` (an IANA name as the database spells it), UTC without one."""
    name = _given(value) or DEFAULT_TZ
    if name == DEFAULT_TZ:
        return name, ZoneInfo(DEFAULT_TZ)
    if _ZONE_NAME.fullmatch(name) and name in _zone_names():
        try:
            return name, ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise BadRequest(
        "tz must be a time zone name of the IANA database, spelled as it spells it, "
        "such as UTC, Europe/Berlin or America/New_York (not an offset such as +01:00)"
    )


def parse_zoned_window(
    start_date: str | None, end_date: str | None, tz: ZoneInfo | None
) -> tuple[datetime | None, datetime | None]:
    """:func:`parse_window` with a date-only bound read as a day in ``tz`` (None: UTC,
    today's rule); an RFC 3339 bound keeps its own offset."""
    if tz is None or tz.key == DEFAULT_TZ:
        return parse_window(start_date, end_date)
    start = _zoned_bound("start_date", start_date, tz, end=False)
    end = _zoned_bound("end_date", end_date, tz, end=True)
    if start is not None and end is not None and start > end:
        raise BadRequest(
            "start_date is later than end_date: give a start_date on or before the end_date"
        )
    return start, end


_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def _zoned_bound(parameter: str, value: str | None, tz: ZoneInfo, *, end: bool) -> datetime | None:
    if value is None:
        return None
    match = _DATE.fullmatch(value.strip())
    if match is None:
        return parse_bound(parameter, value, end=end)
    try:
        day = date(*(int(part) for part in match.groups()))
    except ValueError:
        raise InvalidDate(parameter) from None
    try:
        moment = zones.day_end(day, tz) if end else zones.day_start(day, tz)
    except OverflowError:  # a day at the very edge of the calendar: no bound beyond it
        return _LAST if end else _FIRST
    return moment.astimezone(UTC)


def parse_interval(value: str | None) -> zones.Interval:
    """``day`` (the default), ``week`` or ``month``."""
    given = _given(value) or "day"
    for interval in zones.INTERVALS:
        if given == interval:
            return interval
    raise BadRequest("interval must be day, week or month")


def parse_names(values: list[str]) -> list[str]:
    """The names a time series charts: non-empty, each once, in the order given."""
    names = list(dict.fromkeys(value for value in values if value))
    if len(names) > MAX_NAMES:
        raise BadRequest(
            f"name is given with more than {MAX_NAMES} distinct values: chart at most {MAX_NAMES}"
        )
    return names


_DECIMAL = re.compile(r"[0-9]+")


def parse_page(limit: str | None, offset: str | None) -> tuple[int, int]:
    """``(offset, limit)`` of a page of leads: limit 1 to 500 (default 500), offset 0 or more."""
    limit_text, offset_text = _given(limit), _given(offset)
    size = MAX_LIMIT
    if limit_text is not None:
        if not _DECIMAL.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise BadRequest(f"limit must be a decimal integer from 1 to {MAX_LIMIT}")
        size = int(limit_text)
    start = 0
    if offset_text is not None:
        if not _DECIMAL.fullmatch(offset_text) or len(offset_text) > 18:
            raise BadRequest("offset must be a decimal integer, 0 or more")
        start = int(offset_text)
    return start, size


def parse_format(value: str | None, accept: str | None) -> str:
    """``json``, ``csv`` or ``arrow``: the ``format`` parameter, else the Accept header."""
    given = _given(value)
    if given is not None:
        if given not in FORMATS:
            raise BadRequest("format must be json, csv or arrow (lower case)")
        return given
    return negotiate(accept)


def negotiate(accept: str | None) -> str:
    """The format an Accept header prefers: CSV or Arrow when it names their media
    type with the highest weight (an exact type outranks a wildcard of the same
    weight, then the earlier one); JSON for ``*/*``, anything else, or no header."""
    best: tuple[float, int, int, str] = (0.0, 0, 0, "json")
    for position, item in enumerate((accept or "").split(",")):
        media, *parameters = item.split(";")
        media = media.strip().lower()
        if not media:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _, text = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(text.strip())
                except ValueError:
                    weight = -1.0
                if not 0 <= weight <= 1:
                    weight = -1.0
        if weight <= 0:
            continue
        if media == CSV:
            candidate = (weight, 1, -position, "csv")
        elif media == ARROW:
            candidate = (weight, 1, -position, "arrow")
        else:
            candidate = (weight, int(media == "application/json"), -position, "json")
        best = max(best, candidate)
    return best[3]
