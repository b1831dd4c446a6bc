"""What every handler starts from: the services ``create_app`` builds, the caller,
and the active org unit it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, cast

from litestar import Request
from litestar.concurrency import sync_to_thread

from kenbun_analytics.store import RefreshStatus, SnapshotStore, StoreStatus
from kenbun_analytics.web.auth import ACTIVE_OU_COOKIE, Authenticator, Principal, active_org_unit
from kenbun_analytics.web.cache import ResultCache
from kenbun_analytics.web.observability import Metrics
from kenbun_analytics.web.openapi import ORG_UNIT_HEADER
from kenbun_analytics.web.ratelimit import RateLimiter

OrgUnitHeader = Annotated[str | None, ORG_UNIT_HEADER]
"""X-Org-Unit-Id: any text; :func:`kenbun_analytics.web.auth.active_org_unit` judges it."""


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers use, built by ``create_app`` and kept in ``app.state``."""

    store: SnapshotStore
    authenticator: Authenticator
    cache: ResultCache
    limiter: RateLimiter
    secure_cookies: bool
    refresh_status: RefreshStatus
    """Read only: the refresher writes it."""
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class Operations:
    """What the health, readiness and metrics handlers read, in ``app.state.operations``
    of both the public app and the admin app: built before the lifespan, so the admin
    listener answers while the public app starts and stops."""

    store: SnapshotStore
    refresh_status: RefreshStatus
    """Read only: the refresher writes it."""
    metrics: Metrics
    store_status: StoreStatus | None = None
    """With a snapshot directory: this process's role and the directory's state."""


def operations_of(request: Request[Any, Any, Any]) -> Operations:
    return cast(Operations, request.app.state.operations)


def services_of(request: Request[Any, Any, Any]) -> Services:
    return cast(Services, request.app.state.services)


async def principal_of(request: Request[Any, Any, Any]) -> Principal:
    """The caller, after authentication and its credential's rate limit."""
    services = services_of(request)
    authenticator = services.authenticator
    header = request.headers.get("authorization")
    principal = authenticator.cached(header)
    if principal is None:
        principal = await sync_to_thread(authenticator.authenticate, header)
    services.limiter.check(principal.credential_id)
    return principal


async def authorized_org_unit(request: Request[Any, Any, Any], org_unit_header: str | None) -> str:
    principal = await principal_of(request)
    return active_org_unit(
        principal, header=org_unit_header, cookie=request.cookies.get(ACTIVE_OU_COOKIE)
    )
