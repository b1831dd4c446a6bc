"""Liveness, readiness and metrics.

The public address answers only whether the service is alive and ready, naming
no org unit, host or error; the details and the metrics are on the admin
listener (:func:`kenbun_analytics.web.app.create_admin_app`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, get
from prometheus_client import generate_latest

from kenbun_analytics.web.context import operations_of
from kenbun_analytics.web.openapi import READINESS_ERRORS, documented
from kenbun_analytics.web.schemas import (
    HealthResponse,
    OrgUnitHealth,
    ReadyResponse,
    StatusResponse,
    StoreHealth,
)


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
    operations = operations_of(request)
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
                version=snapshot.version if snapshot else None,
            )
        )
    store = operations.store_status
    return HealthResponse(
        status="ok",
        last_refresh_error=status.errors.get("*"),
        last_refresh_seconds=status.last_duration_seconds,
        org_units=org_units,
        store=StoreHealth(
            role=store.role,
            election_error=store.election_error,
            last_publish_at=store.last_publish_at,
            last_error=store.last_error,
            last_error_at=store.last_error_at,
            refused_versions=store.refused,
            bytes_held=store.bytes_held,
        )
        if store is not None
        else None,
    )


@get(
    "/readyz",
    summary="Ready once every org unit has its first snapshot",
    tags=["operations"],
    operation_id="getReadiness",
    response_description=(
        "Ready: every org unit had a snapshot; one created since may still be loading."
    ),
    responses=READINESS_ERRORS,
    operation_class=documented(public=True),
)
async def readyz(request: Request[Any, Any, Any]) -> Response[ReadyResponse]:
    """Public and admin: the reason names no org unit, host or error text (the admin
    listener's /healthz has those)."""
    operations = operations_of(request)
    status = operations.refresh_status
    store = operations.store_status
    if status.org_unit_ids is None and store is not None and store.role == "follower":
        reason = (
            "no snapshot is published in the snapshot directory yet, and this process "
            "cannot reach PostgreSQL to take over refreshing"
            if store.election_error
            else "no snapshot is published in the snapshot directory yet; "
            "another process is refreshing"
        )
        body = ReadyResponse(ready=False, detail=f"not ready: {reason}")
        return Response(body, status_code=503)
    if status.org_unit_ids is None:
        reason = (
            "the snapshot refresh failed and is retried (PostgreSQL unreachable or failing)"
            if status.errors.get("*")
            else "the first snapshot refresh has not finished"
        )
        body = ReadyResponse(ready=False, detail=f"not ready: {reason}")
        return Response(body, status_code=503)
    missing = status.loading(operations.store)
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
    return generate_latest(operations_of(request).metrics.registry)


ROUTES = [healthz, readyz]
"""The public address's: alive and ready, nothing more."""
ADMIN_ROUTES = [health_details, metrics, readyz]
"""The admin listener's routes: no credentials, so never on the public address."""
