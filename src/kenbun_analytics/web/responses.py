"""How a cached answer is sent: the cache keys, ETag and 304, gzip, X-Snapshot-At.

The app's handlers and the pre-routing layer (:mod:`kenbun_analytics.web.hits`)
build the same status, headers and body here, from the same key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response
from litestar.concurrency import sync_to_thread

from kenbun_analytics.engine.filters import NO_FILTERS, Filters
from kenbun_analytics.store import Snapshot
from kenbun_analytics.web.cache import CachedResponse, ResultCache
from kenbun_analytics.web.context import services_of

JSON = "application/json"
MEDIA_TYPES = {
    "json": JSON,
    "csv": "text/csv",  # Litestar adds "; charset=utf-8" to a text/* type
    "arrow": "application/vnd.apache.arrow.stream",
}
"""The Content-Type of each answer format."""
VARY = "Accept, Accept-Encoding"
"""The same URL answers in several formats and encodings."""
CacheKey = tuple[object, ...]


def campaigns_key(
    org_unit_id: str,
    snapshot: Snapshot,
    group_by: str,
    start: datetime | None,
    end: datetime | None,
    *,
    filters: Filters = NO_FILTERS,
    fmt: str = "json",
) -> CacheKey:
    """The result cache's key of an aggregate: the app and the pre-routing layer share it."""
    return ("campaigns", org_unit_id, snapshot.version, group_by, start, end, filters, fmt)


def leads_key(
    org_unit_id: str,
    snapshot: Snapshot,
    *,
    group_by: str,
    campaign_name: str,
    start: datetime | None,
    end: datetime | None,
    filters: Filters = NO_FILTERS,
    offset: int = 0,
    limit: int = 500,
    fmt: str = "json",
) -> CacheKey:
    """The result cache's key of a drilldown page."""
    return (
        "leads",
        org_unit_id,
        snapshot.version,
        group_by,
        campaign_name,
        start,
        end,
        filters,
        offset,
        limit,
        fmt,
    )


def dashboard_key(kind: str, org_unit_id: str, snapshot: Snapshot, *params: object) -> CacheKey:
    """The result cache's key of a totals or time-series answer (``params`` end with the format)."""
    return (kind, org_unit_id, snapshot.version, *params)


@functools.lru_cache(maxsize=256)
def _snapshot_at(taken_at: datetime) -> str:
    """The header text of a snapshot time; formatted once per snapshot, not per request."""
    return taken_at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether Accept-Encoding names gzip with a non-zero weight."""
    for item in (accept_encoding or "").split(","):
        coding, _, parameters = item.partition(";")
        if coding.strip().lower() == "gzip":
            name, _, weight = parameters.strip().partition("=")
            if name.strip().lower() != "q":
                return True
            try:
                return float(weight) > 0
            except ValueError:
                return False
    return False


def cached_answer(
    cache: ResultCache,
    key: CacheKey,
    entry: CachedResponse,
    snapshot: Snapshot,
    *,
    accept_encoding: str | None,
    if_none_match: str | None,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a cached answer: gzip when asked for and
    worth it, 304 when the caller holds the current ETag."""
    body, etag = entry.body, entry.etag
    headers = {"Cache-Control": "private, no-cache", "Vary": VARY}
    if accepts_gzip(accept_encoding):
        gzipped = cache.gzipped(key, entry)
        if gzipped is not None:
            body, etag = gzipped, entry.gzip_etag
            headers["Content-Encoding"] = "gzip"
    headers["ETag"] = etag
    headers["X-Snapshot-At"] = _snapshot_at(snapshot.taken_at)
    headers.update(entry.headers)
    if _matches(if_none_match, etag):
        headers.pop("Content-Encoding", None)
        return 304, headers, b""
    return 200, headers, body


def _cached_response(
    request: Request[Any, Any, Any],
    key: CacheKey,
    entry: CachedResponse,
    snapshot: Snapshot,
    media_type: str,
) -> Response[Any]:
    status, headers, body = cached_answer(
        services_of(request).cache,
        key,
        entry,
        snapshot,
        accept_encoding=request.headers.get("accept-encoding"),
        if_none_match=request.headers.get("if-none-match"),
    )
    if status == 304:
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip() for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


async def answer(
    request: Request[Any, Any, Any],
    snapshot: Snapshot,
    key: CacheKey,
    compute: Callable[..., Any],
    *args: Any,
    media_type: str = JSON,
) -> Response[Any]:
    """The answer of ``key``: from the result cache, else computed off the event
    loop (``compute(snapshot, *args)``: the body, or an object with ``body`` and
    ``headers`` that belong to it) and cached; 304 or gzip as the request asks."""
    cache = services_of(request).cache
    entry = cache.get(key)
    if entry is None:
        computed = await sync_to_thread(compute, snapshot, *args)
        if isinstance(computed, bytes):
            entry = cache.put(key, computed)
        else:
            entry = cache.put(key, computed.body, computed.headers)
    if entry.gzip_pending and accepts_gzip(request.headers.get("accept-encoding")):
        # Tens of milliseconds for a large answer: kept off the event loop.
        await sync_to_thread(cache.gzipped, key, entry)
    return _cached_response(request, key, entry, snapshot, media_type)
