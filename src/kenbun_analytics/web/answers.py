"""What each analytics answer is: the engine's query over a snapshot, encoded as
the body the cache keeps, in the format asked for (JSON, CSV or Arrow), all
from the same frames (:mod:`kenbun_analytics.web.formats`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import polars as pl

from kenbun_analytics.engine import dashboards, queries, zones
from kenbun_analytics.engine.filters import NO_FILTERS, Filters
from kenbun_analytics.engine.wire import json_array
from kenbun_analytics.errors import BadRequest
from kenbun_analytics.store import Snapshot
from kenbun_analytics.web.formats import arrow_stream, csv_text, money_text
from kenbun_analytics.web.schemas import CampaignsEnvelope, LeadsEnvelope, json_encoder

MAX_BUCKETS = 1000
"""The most buckets a time series holds."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A body and the headers that belong to it (cached together)."""

    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Window:
    """What every analytics endpoint reads: the grouping, the window and the filters."""

    group_by: str
    start: datetime | None
    end: datetime | None
    filters: Filters = NO_FILTERS


_HOLE = b"\x00"
"""Where an envelope's rows go: JSON text never holds a raw NUL."""


def _around(envelope: CampaignsEnvelope | LeadsEnvelope) -> tuple[bytes, bytes]:
    """The envelope's JSON before and after its rows (given as :data:`_HOLE`)."""
    before, after = json_encoder.encode(envelope).split(_HOLE)
    return before, after


def _tabular(frame: pl.DataFrame, fmt: str) -> bytes:
    return csv_text(frame) if fmt == "csv" else arrow_stream(frame)


def _rows(snapshot: Snapshot, window: Window) -> tuple[pl.DataFrame, int, int]:
    layout = snapshot.layout
    lo, hi = queries.window_rows(layout.times, window.start, window.end)
    rows = dashboards.campaign_rows(
        layout, group_by=window.group_by, lo=lo, hi=hi, filters=window.filters
    ).collect(engine=queries.engine(hi - lo))
    return rows, lo, hi


def campaigns_body(
    snapshot: Snapshot,
    group_by: str,
    start: datetime | None,
    end: datetime | None,
    *,
    filters: Filters = NO_FILTERS,
    fmt: str = "json",
) -> bytes:
    """The aggregate (today's arguments first, so today's callers are unchanged)."""
    rows, _, _ = _rows(snapshot, Window(group_by, start, end, filters))
    if fmt != "json":
        return _tabular(rows, fmt)
    envelope = CampaignsEnvelope(group_by=group_by, campaigns=msgspec.Raw(_HOLE))
    return json_array(rows, between=_around(envelope))


def leads_page(
    snapshot: Snapshot,
    *,
    window: Window,
    campaign_name: str,
    offset: int = 0,
    limit: int = queries.DRILLDOWN_LIMIT,
    fmt: str = "json",
) -> Encoded:
    """A page of a value's leads, with its X-Total-Count."""
    layout = snapshot.layout
    lo, hi = queries.window_rows(layout.times, window.start, window.end)
    rows = dashboards.value_rows(
        layout,
        group_by=window.group_by,
        name=campaign_name,
        lo=lo,
        hi=hi,
        filters=window.filters,
    )
    page = dashboards.lead_page(layout, rows=rows, offset=offset, limit=limit)
    headers = (("X-Total-Count", str(page.total)),)
    if fmt != "json":
        return Encoded(_tabular(page.leads, fmt), headers)
    envelope = LeadsEnvelope(campaign_name=campaign_name, leads=msgspec.Raw(_HOLE))
    return Encoded(json_array(page.leads, between=_around(envelope)), headers)


def leads_body(
    snapshot: Snapshot,
    group_by: str,
    campaign_name: str,
    start: datetime | None,
    end: datetime | None,
) -> bytes:
    """Today's drilldown body: the first page of 500, without filters, as JSON."""
    window = Window(group_by, start, end)
    return leads_page(snapshot, window=window, campaign_name=campaign_name).body


def totals_body(snapshot: Snapshot, window: Window, fmt: str = "json") -> bytes:
    layout = snapshot.layout
    lo, hi = queries.window_rows(layout.times, window.start, window.end)
    row = dashboards.totals(layout, group_by=window.group_by, lo=lo, hi=hi, filters=window.filters)
    if fmt != "json":
        return _tabular(row, fmt)
    group_by = json_encoder.encode(window.group_by)
    return b'{"group_by":' + group_by + b',"totals":' + json_array(row)[1:-1] + b"}"


def _bucket_starts(
    snapshot: Snapshot,
    window: Window,
    rows: tuple[int, int],
    tz: ZoneInfo,
    interval: zones.Interval,
) -> list[datetime]:
    lo, hi = rows
    span = None
    if window.start is None or window.end is None:  # a missing bound is an event's time
        span = dashboards.event_span(
            snapshot.layout, group_by=window.group_by, lo=lo, hi=hi, filters=window.filters
        )
    first = window.start or (span[0] if span else None)
    last = window.end or (span[1] if span else None)
    if first is None or last is None:
        return []
    try:
        starts = zones.bucket_starts(tz, interval, first, last, limit=MAX_BUCKETS)
    except OverflowError:
        starts = [first] * (MAX_BUCKETS + 1)  # a window to the end of the calendar
    if len(starts) > MAX_BUCKETS:
        raise BadRequest(
            f"the time series would have more than {MAX_BUCKETS} buckets: narrow the window "
            "(start_date, end_date) or choose a longer interval (week or month)"
        )
    return starts


def _series_frame(series: pl.DataFrame, starts: list[datetime]) -> pl.DataFrame:
    """One row per name and bucket: ``name``, ``bucket_start`` (the instant) and the metrics."""
    return series.select(
        "name",
        pl.lit(pl.Series(starts, dtype=pl.Datetime("us", "UTC")))
        .gather(pl.col("bucket"))
        .alias("bucket_start"),
        *dashboards.METRICS,
    )


def timeseries_body(
    snapshot: Snapshot,
    *,
    window: Window,
    tz_name: str,
    interval: zones.Interval,
    names: list[str],
    fmt: str = "json",
) -> bytes:
    layout = snapshot.layout
    tz = ZoneInfo(tz_name)
    lo, hi = queries.window_rows(layout.times, window.start, window.end)
    starts = _bucket_starts(snapshot, window, (lo, hi), tz, interval)
    if not names:
        names = dashboards.leading_names(
            layout, group_by=window.group_by, lo=lo, hi=hi, filters=window.filters
        )
    series = dashboards.timeseries(
        layout,
        group_by=window.group_by,
        lo=lo,
        hi=hi,
        filters=window.filters,
        names=names,
        edges=zones.bucket_edges(starts, tz, interval),
    )
    labels = [zones.bucket_label(start, tz_name) for start in starts]
    if fmt == "csv":
        frame = series.select(
            "name",
            pl.lit(pl.Series(labels, dtype=pl.String))
            .gather(pl.col("bucket"))
            .alias("bucket_start"),
            *dashboards.METRICS,
        )
        return csv_text(frame)
    if fmt == "arrow":
        return arrow_stream(_series_frame(series, starts))
    head = json_encoder.encode(
        {"group_by": window.group_by, "interval": interval, "tz": tz_name, "buckets": labels}
    )
    return head[:-1] + b',"series":' + _series_json(series, names) + b"}"


def _metric_text(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    return money_text(column, dtype) if isinstance(dtype, pl.Decimal) else column.cast(pl.String)


def _series_json(series: pl.DataFrame, names: list[str]) -> bytes:
    """The ``series`` array: per name in order, each metric's list over the buckets."""
    texts = (
        series.select(
            "name",
            *(
                _metric_text(name, dtype)
                for name, dtype in series.schema.items()
                if name in dashboards.METRICS
            ),
        )
        .group_by("name", maintain_order=True)
        .agg(pl.col(metric).str.join(",") for metric in dashboards.METRICS)
    )
    lists = {row[0]: row[1:] for row in texts.iter_rows()}
    empty = ("",) * len(dashboards.METRICS)
    parts = []
    for name in dict.fromkeys(name for name in names if name):
        values = lists.get(name, empty)
        fields = ",".join(
            f'"{metric}":[{text}]' for metric, text in zip(dashboards.METRICS, values, strict=True)
        )
        parts.append(b'{"name":' + json_encoder.encode(name) + b"," + fields.encode() + b"}")
    return b"[" + b",".join(parts) + b"]"
