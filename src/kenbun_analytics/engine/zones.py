"""Days, weeks and months in a time zone: window bounds and time-series buckets.

A bucket starts at the first instant of a local date: its midnight, or where a
change of offset skips midnight, the first instant that exists that day (a
date the zone skips entirely starts where the next one does, and holds
nothing). Weeks are ISO weeks, starting on Monday; months start on the 1st.
A bucket runs to the next bucket's start, so a day lasts 23, 24.5 or 25
hours where the offset changes.

Everything here is exact and per bucket, never per event: the queries place
events in buckets by comparing their UTC microseconds with the bucket starts'
(:func:`bucket_edges`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Interval = Literal["day", "week", "month"]
INTERVALS: tuple[Interval, ...] = ("day", "week", "month")
MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware ``moment``, exactly."""
    return (moment - _EPOCH) // MICROSECOND


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of the local date ``day`` in ``tz``, aware in ``tz``.

    Local midnight when it exists (the earlier one when it occurs twice); when
    a change of offset skips it, the first instant after it: the one at which
    the clocks jump (found by bisection between the two readings of the
    skipped midnight, the earlier of which lies before the jump).
    """
    return _start(day, tz).astimezone(tz)


def day_end(day: date, tz: ZoneInfo) -> datetime:
    """The last microsecond of the local date ``day`` in ``tz`` (the next day's
    start minus one microsecond), aware in ``tz``."""
    return (_start(day + timedelta(days=1), tz) - MICROSECOND).astimezone(tz)


def _start(day: date, tz: ZoneInfo) -> datetime:
    """:func:`day_start` in UTC. Arithmetic and comparisons stay in UTC: Python
    compares and shifts two datetimes of the same zone by their wall clocks."""
    wall = datetime.combine(day, time(), tzinfo=tz)
    instant = wall.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return instant
    # Midnight is in a gap: fold=0 reads it with the offset before the jump (an
    # instant after it), fold=1 with the offset after (one before it).
    before = utc_micros(wall.replace(fold=1).astimezone(UTC))
    after = utc_micros(instant)
    while after - before > 1:
        middle = (before + after) // 2
        if _local_date(_EPOCH + middle * MICROSECOND, tz) >= day:
            after = middle
        else:
            before = middle
    return _EPOCH + after * MICROSECOND


def _local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def _floor(day: date, interval: Interval) -> date:
    """The first date of the bucket of ``interval`` that holds ``day``."""
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def _next(day: date, interval: Interval) -> date:
    """The first date of the bucket after the one starting on ``day``."""
    if interval == "week":
        return day + timedelta(days=7)
    if interval == "month":
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return day + timedelta(days=1)


def bucket_starts(
    tz: ZoneInfo,
    interval: Interval,
    first: datetime,
    last: datetime,
    *,
    limit: int | None = None,
) -> list[datetime]:
    """The start (aware, in ``tz``) of every bucket of ``interval`` from the one
    holding the instant ``first`` to the one holding ``last``; none when
    ``last`` is before ``first``.

    The bucket holding an instant is the last one starting at or before it
    (around a change of offset at midnight, an instant's local date can be
    the day before its bucket's). With ``limit``, at most ``limit + 1``
    starts: more than ``limit`` says the window holds more buckets than that.
    """
    first, last = first.astimezone(UTC), last.astimezone(UTC)
    if last < first:
        return []
    day = _floor(_local_date(first, tz), interval)
    following = _next(day, interval)
    while _start(following, tz) <= first:
        day, following = following, _next(following, interval)
    starts: list[datetime] = []
    while (start := _start(day, tz)) <= last:
        if not starts or start > starts[-1]:  # a skipped date starts where the next one does
            starts.append(start)
            if limit is not None and len(starts) > limit:
                break
        day = _next(day, interval)
    return [start.astimezone(tz) for start in starts]


def bucket_edges(starts: list[datetime], tz: ZoneInfo, interval: Interval) -> list[int]:
    """The UTC microseconds of each of ``starts`` (from :func:`bucket_starts`)
    and of the start of the bucket after the last: bucket ``k`` holds the
    instants ``edges[k] <= t < edges[k + 1]``."""
    if not starts:
        return []
    last = starts[-1].astimezone(UTC)
    following = _next(_floor(_local_date(last, tz), interval), interval)
    while (end := _start(following, tz)) <= last:
        following = _next(following, interval)
    return [utc_micros(start) for start in starts] + [utc_micros(end)]


def bucket_label(start: datetime, tz_name: str) -> str:
    """RFC 3339 text of an aware bucket ``start`` with the offset in force then:
    ``Z`` when ``tz_name`` is ``UTC``, else ``+HH:MM`` (``+00:00`` at offset
    zero). Fractional seconds only when present; an offset with seconds (local
    mean time, before the zones were standardised) keeps them (``+00:53:28``),
    as RFC 3339 cannot say it otherwise."""
    offset = start.utcoffset()
    if offset is None:
        raise ValueError("a bucket start is an aware datetime")
    # ISO 8601 as Python writes it is that text: four-digit years, microseconds
    # only when present, the offset as +HH:MM with seconds only when present.
    text = start.isoformat()
    return text.removesuffix("+00:00") + "Z" if tz_name == "UTC" else text
