"""Thin Litestar handlers: parse, authorize, run a query off the event loop, encode.

Domain errors become HTTP statuses in exactly one place, :data:`EXCEPTION_HANDLERS`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import msgspec
from litestar import Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.params import PathParameter
from litestar.response import Response as LitestarResponse
from litestar.status_codes import HTTP_204_NO_CONTENT
from msgspec import DecodeError, ValidationError
from prometheus_client import generate_latest

from kenbun_analytics import queries
from kenbun_analytics.auth import (
    ACTIVE_OU_COOKIE,
    WWW_AUTHENTICATE,
    Authenticator,
    Principal,
    active_org_unit,
    parse_org_unit_id,
)
from kenbun_analytics.cache import CachedResponse, ResultCache
from kenbun_analytics.errors import (
    BadRequest,
    Forbidden,
    KenbunError,
    NotReady,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
)
from kenbun_analytics.observability import Metrics
from kenbun_analytics.openapi import (
    ACTIVE_ORG_UNIT_BODY,
    ANALYTICS_ERRORS,
    ANALYTICS_HEADERS,
    CAMPAIGN_NAME,
    CAMPAIGN_NAME_ENCODING,
    CHOOSE_ERRORS,
    CREDENTIALS,
    END_DATE,
    GROUP_BY,
    LEADS_ERRORS,
    NOT_MODIFIED,
    ORG_UNIT_HEADER,
    ORG_UNITS_ERRORS,
    READINESS_ERRORS,
    SET_COOKIE,
    START_DATE,
    documented,
)
from kenbun_analytics.params import (
    QUERY_PARAMETERS,
    drilldown_campaign_name,
    given_values,
    group_by_column,
    parse_window,
)
from kenbun_analytics.ratelimit import RateLimiter
from kenbun_analytics.schemas import (
    CampaignsEnvelope,
    CampaignsResponse,
    ErrorBody,
    HealthResponse,
    LeadsEnvelope,
    LeadsResponse,
    OrgUnit,
    OrgUnitHealth,
    OrgUnitsResponse,
    ReadyResponse,
    StatusResponse,
    active_org_unit_decoder,
    json_encoder,
)
from kenbun_analytics.store import Snapshot, SnapshotStore
from kenbun_analytics.wire import json_array

logger = logging.getLogger(__name__)
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers use, built by ``create_app`` and kept in ``app.state``."""

    store: SnapshotStore
    authenticator: Authenticator
    cache: ResultCache
    limiter: RateLimiter
    secure_cookies: bool
    refresh_status: Any
    """A :class:`kenbun_analytics.scheduler.RefreshStatus` (read only)."""
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class Operations:
    """What the health, readiness and metrics handlers read, in ``app.state.operations``
    of both the public app and the admin app: built before the lifespan, so the admin
    listener answers while the public app starts and stops."""

    store: SnapshotStore
    refresh_status: Any
    """A :class:`kenbun_analytics.scheduler.RefreshStatus` (read only)."""
    metrics: Metrics


def _operations(request: Request[Any, Any, Any]) -> Operations:
    return cast(Operations, request.app.state.operations)


def _services(request: Request[Any, Any, Any]) -> Services:
    return cast(Services, request.app.state.services)


async def _principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller, after authentication and its credential's rate limit."""
    services = _services(request)
    authenticator = services.authenticator
    header = request.headers.get("authorization")
    principal = authenticator.cached(header)
    if principal is None:
        principal = await sync_to_thread(authenticator.authenticate, header)
    services.limiter.check(principal.credential_id)
    return principal


def _query_values(request: Request[Any, Any, Any]) -> tuple[str | None, str | None, str | None]:
    """group_by, start_date and end_date as :func:`given_values` reads them: the
    handlers' bound arguments keep an empty value and the last of repeated ones."""
    query = request.query_params
    given = given_values({name: query.getall(name, []) for name in QUERY_PARAMETERS})
    return given.get("group_by"), given.get("start_date"), given.get("end_date")


async def _authorize(request: Request[Any, Any, Any], org_unit_header: str | None) -> str:
    principal = await _principal(request)
    return active_org_unit(
        principal, header=org_unit_header, cookie=request.cookies.get(ACTIVE_OU_COOKIE)
    )


# ------------------------------------------------------------------ compute --


def campaigns_body(
    snapshot: Snapshot, group_by: str, start: datetime | None, end: datetime | None
) -> bytes:
    layout = snapshot.layout
    lo, hi = queries.window_rows(layout.times, start, end)
    rows = queries.campaign_rows(layout, group_by=group_by, lo=lo, hi=hi).collect()
    return json_encoder.encode(
        CampaignsEnvelope(group_by=group_by, campaigns=msgspec.Raw(json_array(rows)))
    )


def leads_body(
    snapshot: Snapshot,
    group_by: str,
    campaign_name: str,
    start: datetime | None,
    end: datetime | None,
) -> bytes:
    layout = snapshot.layout
    lo, hi = queries.window_rows(layout.times, start, end)
    code = layout.codes[group_by].get(campaign_name)
    rows = queries.campaign_leads(layout, rows=layout.rows_of(group_by, code, lo, hi))
    return json_encoder.encode(
        LeadsEnvelope(campaign_name=campaign_name, leads=msgspec.Raw(json_array(rows)))
    )


# ----------------------------------------------------------------- respond --


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
    key: tuple[object, ...],
    entry: CachedResponse,
    snapshot: Snapshot,
    *,
    accept_encoding: str | None,
    if_none_match: str | None,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a cached answer: gzip when asked for and
    worth it, 304 when the caller holds the current ETag."""
    body, etag = entry.body, entry.etag
    headers = {"Cache-Control": "private, no-cache", "Vary": "Accept-Encoding"}
    if accepts_gzip(accept_encoding):
        gzipped = cache.gzipped(key, entry)
        if gzipped is not None:
            body, etag = gzipped, entry.gzip_etag
            headers["Content-Encoding"] = "gzip"
    headers["ETag"] = etag
    headers["X-Snapshot-At"] = _snapshot_at(snapshot.taken_at)
    if _matches(if_none_match, etag):
        headers.pop("Content-Encoding", None)
        return 304, headers, b""
    return 200, headers, body


def _cached_response(
    request: Request[Any, Any, Any],
    key: tuple[object, ...],
    entry: CachedResponse,
    snapshot: Snapshot,
) -> Response[bytes]:
    status, headers, body = cached_answer(
        _services(request).cache,
        key,
        entry,
        snapshot,
        accept_encoding=request.headers.get("accept-encoding"),
        if_none_match=request.headers.get("if-none-match"),
    )
    if status == 304:
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body, media_type=JSON, headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip() for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


async def _answer(
    request: Request[Any, Any, Any],
    snapshot: Snapshot,
    key: tuple[object, ...],
    compute: Any,
    *args: Any,
) -> Response[bytes]:
    cache = _services(request).cache
    entry = cache.get(key)
    if entry is None:
        body = await sync_to_thread(compute, snapshot, *args)
        entry = cache.put(key, body)
    if entry.gzip_pending and accepts_gzip(request.headers.get("accept-encoding")):
        # Tens of milliseconds for a large answer: kept off the event loop.
        await sync_to_thread(cache.gzipped, key, entry)
    return _cached_response(request, key, entry, snapshot)


OrgUnitHeader = Annotated[str | None, ORG_UNIT_HEADER]
"""X-Org-Unit-Id: any text; :func:`kenbun_analytics.auth.active_org_unit` judges it."""


@get(
    "/analytics/campaigns",
    summary="Aggregated UTM campaign performance",
    description="One row per UTM value of the chosen key with counting events in the window, "
    "sorted by total_events descending, then name.",
    tags=["analytics"],
    operation_id="listCampaigns",
    security=CREDENTIALS,
    response_description="The grouping applied and one row per UTM value.",
    responses={304: NOT_MODIFIED, **ANALYTICS_ERRORS},
    operation_class=documented(headers=ANALYTICS_HEADERS),
)
async def list_campaigns(
    request: Request[Any, Any, Any],
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[CampaignsResponse]:
    org_unit_id = await _authorize(request, x_org_unit_id)
    group_by, start_date, end_date = _query_values(request)
    column = group_by_column(group_by)
    start, end = parse_window(start_date, end_date)
    snapshot = _services(request).store.get(org_unit_id)
    key = ("campaigns", org_unit_id, snapshot.version, column, start, end)
    response = await _answer(request, snapshot, key, campaigns_body, column, start, end)
    return cast(Response[CampaignsResponse], response)


async def _leads(
    request: Request[Any, Any, Any], org_unit_header: str | None
) -> Response[LeadsResponse]:
    org_unit_id = await _authorize(request, org_unit_header)
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    named = request.query_params.getall("campaign_name", [])
    campaign_name = drilldown_campaign_name(raw_path, named)
    if campaign_name is None:
        raise NotFoundException
    group_by, start_date, end_date = _query_values(request)
    column = group_by_column(group_by)
    start, end = parse_window(start_date, end_date)
    snapshot = _services(request).store.get(org_unit_id)
    key = ("leads", org_unit_id, snapshot.version, column, campaign_name, start, end)
    response = await _answer(request, snapshot, key, leads_body, column, campaign_name, start, end)
    return cast(Response[LeadsResponse], response)


@get(
    "/analytics/campaigns/{campaign_name:str}/leads",
    summary="Leads behind one UTM value",
    description="Up to 500 leads with counting events for the value, ordered by first touch, "
    "most recent first." + CAMPAIGN_NAME_ENCODING,
    tags=["analytics"],
    operation_id="listCampaignLeads",
    security=CREDENTIALS,
    response_description="The value and its leads.",
    responses={304: NOT_MODIFIED, **LEADS_ERRORS},
    operation_class=documented(headers=ANALYTICS_HEADERS),
)
async def list_campaign_leads(
    request: Request[Any, Any, Any],
    *,
    campaign_name: Annotated[str, CAMPAIGN_NAME],
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[LeadsResponse]:
    del campaign_name, group_by, start_date, end_date  # read from the request (see _leads)
    return await _leads(request, x_org_unit_id)


# ASGI servers decode %2F before routing, so a value holding "/" arrives here, and
# so does /analytics/campaigns/leads?campaign_name=<value> (params.NAMED_LEADS_PATH).
@get("/analytics/campaigns/{rest:path}", include_in_schema=False)
async def list_campaign_leads_with_slashes(
    request: Request[Any, Any, Any],
    *,
    rest: Annotated[str, PathParameter()],
    group_by: Annotated[str | None, GROUP_BY] = None,
    start_date: Annotated[str | None, START_DATE] = None,
    end_date: Annotated[str | None, END_DATE] = None,
    x_org_unit_id: OrgUnitHeader = None,
) -> Response[LeadsResponse]:
    del rest, group_by, start_date, end_date  # the raw path is authoritative (see _leads)
    return await _leads(request, x_org_unit_id)


# --------------------------------------------------------------- org units --


@get(
    "/org-units",
    summary="Org units the caller may read",
    description="Each with whether it is the active one: the one X-Org-Unit-Id names, else "
    "the one chosen with POST /org-units/active, else the credential's own or default one "
    "(none is active when that one is not readable).",
    tags=["org units"],
    operation_id="listOrgUnits",
    security=CREDENTIALS,
    response_description="The readable org units, by name.",
    responses=ORG_UNITS_ERRORS,
    operation_class=documented(),
)
async def list_org_units(
    request: Request[Any, Any, Any], x_org_unit_id: OrgUnitHeader = None
) -> OrgUnitsResponse:
    principal = await _principal(request)
    try:
        active: str | None = active_org_unit(
            principal, header=x_org_unit_id, cookie=request.cookies.get(ACTIVE_OU_COOKIE)
        )
    except Forbidden:
        active = None
    units = sorted(principal.readable.items(), key=lambda item: (item[1], item[0]))
    return OrgUnitsResponse(
        org_units=[OrgUnit(id=unit, name=name, active=unit == active) for unit, name in units]
    )


@post(
    "/org-units/active",
    status_code=HTTP_204_NO_CONTENT,
    summary="Choose the active org unit",
    description='Body {"org_unit_id": "<uuid>"} as application/json. Sets the '
    f"{ACTIVE_OU_COOKIE} cookie, which the other operations read when no X-Org-Unit-Id "
    "header is sent.",
    tags=["org units"],
    operation_id="chooseOrgUnit",
    security=CREDENTIALS,
    response_description="Chosen; the cookie is set. No body.",
    responses=CHOOSE_ERRORS,
    operation_class=documented(
        request_body=ACTIVE_ORG_UNIT_BODY, headers={204: SET_COOKIE}, no_content=(204,)
    ),
)
async def choose_org_unit(request: Request[Any, Any, Any]) -> Response[None]:
    principal = await _principal(request)
    if request.content_type[0] != "application/json":
        raise UnsupportedMediaType
    raw = await request.body()
    try:
        body = active_org_unit_decoder.decode(raw)
    except (DecodeError, ValidationError):
        raise BadRequest('send the JSON body {"org_unit_id": "<uuid>"}') from None
    org_unit_id = parse_org_unit_id(body.org_unit_id)
    if org_unit_id is None:
        raise BadRequest("org_unit_id must be a UUID")
    active_org_unit(principal, header=org_unit_id, cookie=None)
    cookie = Cookie(
        key=ACTIVE_OU_COOKIE,
        value=org_unit_id,
        httponly=True,
        samesite="lax",
        path="/",
        secure=_services(request).secure_cookies,
    )
    return Response(content=None, status_code=HTTP_204_NO_CONTENT, cookies=[cookie])


# ------------------------------------------------------------------ health --


@get(
    "/healthz",
    summary="Liveness",
    tags=["operations"],
    operation_id="getHealth",
    operation_class=documented(public=True),
)
async def healthz() -> StatusResponse:
    """Public: alive or not, nothing about org units or the database (the details are
    on the admin listener)."""
    return StatusResponse(status="ok")


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def health_details(request: Request[Any, Any, Any]) -> HealthResponse:
    """Admin listener: each org unit's snapshot time, age, size and last refresh error."""
    operations = _operations(request)
    status = operations.refresh_status
    now = datetime.now(UTC)
    known = status.org_unit_ids or sorted(operations.store.all())
    org_units = []
    for unit in known:
        snapshot = operations.store.find(unit)
        org_units.append(
            OrgUnitHealth(
                org_unit_id=unit,
                snapshot_at=snapshot.taken_at if snapshot else None,
                snapshot_age_seconds=(now - snapshot.taken_at).total_seconds()
                if snapshot
                else None,
                events=snapshot.layout.events.height if snapshot else None,
                last_error=status.errors.get(unit),
            )
        )
    return HealthResponse(
        status="ok",
        last_refresh_error=status.errors.get("*"),
        last_refresh_seconds=status.last_duration_seconds,
        org_units=org_units,
    )


@get(
    "/readyz",
    summary="Ready once every org unit has a snapshot",
    tags=["operations"],
    operation_id="getReadiness",
    response_description="Ready: every org unit has a snapshot.",
    responses=READINESS_ERRORS,
    operation_class=documented(public=True),
)
async def readyz(request: Request[Any, Any, Any]) -> Response[ReadyResponse]:
    """Public and admin: the reason names no org unit, host or error text (the admin
    listener's /healthz has those)."""
    operations = _operations(request)
    status = operations.refresh_status
    if status.org_unit_ids is None:
        reason = (
            "the snapshot refresh failed and is retried (PostgreSQL unreachable or failing)"
            if status.errors.get("*")
            else "the first snapshot refresh has not finished"
        )
        body = ReadyResponse(ready=False, detail=f"not ready: {reason}")
        return Response(body, status_code=503)
    missing = [unit for unit in status.org_unit_ids if operations.store.find(unit) is None]
    if missing:
        body = ReadyResponse(ready=False, detail=f"not ready: {len(missing)} org units loading")
        return Response(body, status_code=503)
    return Response(ReadyResponse(ready=True, detail="ready"))


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text format, as Prometheus asks for it; the body is generated in it."""


@get(
    "/metrics",
    include_in_schema=False,
    # Litestar adds "; charset=utf-8" to a text/ media type, completing METRICS_CONTENT_TYPE.
    media_type=METRICS_CONTENT_TYPE.removesuffix("; charset=utf-8"),
    sync_to_thread=False,
)
def metrics(request: Request[Any, Any, Any]) -> bytes:
    """Admin listener: requests, latency, snapshot refreshes, rows and ages, the
    result cache and stale credential answers, in the Prometheus text format."""
    return generate_latest(_operations(request).metrics.registry)


ROUTES = [
    list_campaigns,
    list_campaign_leads,
    list_campaign_leads_with_slashes,
    list_org_units,
    choose_org_unit,
    healthz,
    readyz,
]
"""The public app's routes."""

ADMIN_ROUTES = [health_details, metrics, readyz]
"""The admin listener's routes: no credentials, so never on the public address."""


# ------------------------------------------------------------------ errors --


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[bytes]:
    body = json_encoder.encode(ErrorBody(status=status, detail=detail))
    return LitestarResponse(content=body, status_code=status, media_type=JSON, headers=headers)


_CLIENT_ERRORS: tuple[tuple[type[KenbunError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (BadRequest, 400),
    (UnsupportedMediaType, 415),
    (RateLimited, 429),
    (NotReady, 503),
)


def _error_headers(error: KenbunError) -> dict[str, str] | None:
    if isinstance(error, Unauthenticated):
        return {"WWW-Authenticate": WWW_AUTHENTICATE}
    if isinstance(error, RateLimited):
        return {"Retry-After": str(error.retry_after_seconds)}
    if isinstance(error, NotReady):
        return {"Retry-After": "5"}
    return None


def _kenbun_error(_: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    for kind, status in _CLIENT_ERRORS:
        if isinstance(error, kind):
            return _error(status, getattr(error, "detail", str(error)), _error_headers(error))
    logger.error("request failed: %s", error)
    return _error(503, "the analytics source is unavailable; retry shortly")


def _http_error(_: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    if not isinstance(error, HTTPException):
        return _unexpected_error(_, error)
    detail = error.detail
    if isinstance(error, ValidationException):
        detail = "a request parameter is not valid: " + str(error.detail)
    headers = {k: v for k, v in (error.headers or {}).items() if k.lower() == "allow"}
    return _error(error.status_code, detail, headers)


def _unexpected_error(_: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    logger.error("unexpected %s while answering a request", type(error).__name__)
    return _error(500, "internal error; retry later or contact support")


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    KenbunError: _kenbun_error,
    HTTPException: _http_error,
    Exception: _unexpected_error,
}
