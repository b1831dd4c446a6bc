"""The composition root: ``create_app`` wires settings, source, store, scheduler and API.

The lifespan opens every resource and closes it in ``finally``. Beside the
public app, ``create_app`` builds the admin app (``app.state.admin``): detailed
health and the Prometheus metrics, which ``serve`` runs on a listener of its own
(``--admin-host``/``--admin-port``), never on the public address.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from litestar import Litestar, MediaType, Router, get
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components
from litestar.static_files import create_static_files_router

from kenbun_analytics.errors import SettingsError
from kenbun_analytics.refresh.deployment import Deployment, Publishing
from kenbun_analytics.refresh.published import PublishedStore
from kenbun_analytics.refresh.refresher import Refresher
from kenbun_analytics.refresh.schedule import start_scheduler
from kenbun_analytics.settings import Settings
from kenbun_analytics.source.lock import Election
from kenbun_analytics.source.postgres import Source
from kenbun_analytics.store import RefreshStatus, SnapshotStore, StoreStatus
from kenbun_analytics.web import analytics, health, org_units
from kenbun_analytics.web.auth import Authenticator
from kenbun_analytics.web.cache import ResultCache
from kenbun_analytics.web.context import Operations, Services
from kenbun_analytics.web.guard import MAX_BODY_BYTES, guard
from kenbun_analytics.web.head import answer_head
from kenbun_analytics.web.hits import serve_cached_hits
from kenbun_analytics.web.observability import Metrics, observe
from kenbun_analytics.web.openapi import SECURITY_SCHEMES
from kenbun_analytics.web.problems import EXCEPTION_HANDLERS
from kenbun_analytics.web.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

MAX_REQUEST_BODY_BYTES = MAX_BODY_BYTES
STATIC = resources.files("kenbun_analytics.web") / "static"
ROUTES = [*analytics.ROUTES, *org_units.ROUTES, *health.ROUTES]
"""The public app's routes."""


def page_router() -> Router:
    """The Campaigns page at / and /campaigns, and its assets under /static."""
    page = (STATIC / "index.html").read_bytes()

    @get(
        ["/", "/campaigns"],
        media_type=MediaType.HTML,
        include_in_schema=False,
        sync_to_thread=False,
    )
    def campaigns_page() -> bytes:
        return page

    assets = create_static_files_router(
        path="/static",
        directories=[str(STATIC)],
        include_in_schema=False,
        cache_control=None,
    )
    return Router(path="/", route_handlers=[campaigns_page, assets])


def create_app(settings: Settings, *, run_scheduler: bool = True) -> Litestar:
    """The service as an ASGI app. ``run_scheduler=False`` leaves refreshing to the caller
    (tests call ``app.state.refresher.refresh(wait=True)``)."""
    if not settings.database_url:
        raise SettingsError("KENBUN_DATABASE_URL", "", "a PostgreSQL URL")
    database_url = settings.database_url
    store = SnapshotStore()
    cache = ResultCache(settings.result_cache_bytes)
    status = RefreshStatus()
    store_status = StoreStatus() if settings.snapshot_dir else None
    metrics = Metrics(store, cache, status, store_status)
    operations = Operations(
        store=store, refresh_status=status, metrics=metrics, store_status=store_status
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        source = Source(
            database_url,
            statement_timeout_seconds=settings.refresh_timeout_seconds,
            connections=settings.load_connections + 1,
        )
        # Its own application_name, so pg_stat_activity tells lookups from refreshes.
        auth_source = Source(
            database_url, statement_timeout_seconds=5, application_name="kenbun-analytics-auth"
        )
        deployment = None
        publishing = None
        if settings.snapshot_dir and store_status is not None:
            published = PublishedStore(
                Path(settings.snapshot_dir), grace_seconds=grace_seconds(settings)
            )
            election = Election(database_url, silence_seconds=silence_seconds(settings))
            publishing = Publishing(published, election, store_status, store)
        refresher = Refresher(
            source,
            store,
            full_refresh_seconds=settings.full_refresh_seconds,
            refresh_seconds=settings.refresh_seconds,
            migrate=settings.migrate,
            load_parts=settings.load_connections,
            isolated_loads=settings.isolated_loads,
            on_refresh=metrics.refreshed,
            status=status,
            publisher=publishing,
        )
        if publishing is not None and store_status is not None:
            deployment = Deployment(
                published,
                election,
                refresher,
                store,
                refresh_status=status,
                status=store_status,
                on_refused=metrics.refused.inc,
            )
        app.state.refresher = refresher
        app.state.deployment = deployment
        app.state.services = Services(
            store=store,
            authenticator=Authenticator(
                auth_source,
                cache_seconds=settings.auth_cache_seconds,
                stale_seconds=settings.auth_stale_seconds,
                on_stale=metrics.stale_auth.inc,
            ),
            cache=cache,
            limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
            secure_cookies=settings.secure_cookies,
            refresh_status=status,
            metrics=metrics,
        )
        scheduler = (
            start_scheduler(
                deployment or refresher, tick_seconds=min(1.0, settings.refresh_seconds)
            )
            if run_scheduler
            else None
        )
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=True)
            if deployment is not None:
                deployment.close()
            refresher.close()
            source.close()
            auth_source.close()

    app = Litestar(
        route_handlers=[*ROUTES, page_router()],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_REQUEST_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="kenbun-analytics",
            version="1.0.0",
            description="UTM campaign performance and lead drilldowns per organizational unit.",
            path="/schema",
            # The JSON document alone, at /schema/openapi.json and /schema. No Swagger UI
            # (or other page): it would load scripts from a public CDN into the origin
            # whose sessionStorage holds the Campaigns page's token.
            render_plugins=[JsonRenderPlugin()],
            components=Components(security_schemes=dict(SECURITY_SCHEMES)),
            # Each operation declares its own security: /healthz, /readyz and /metrics
            # need no credentials.
        ),
        debug=False,
        logging_config=None,  # the process's logging is ours: JSON lines, see observability
        state=State({"operations": operations}),
    )
    # Outermost, around Litestar's own exception handling, the way Litestar's
    # OpenTelemetry plugin wraps it: every answer, 404s and 413s too, is observed.
    # Inside the guard's limits: repeated cached aggregates skip the routing. A HEAD
    # is run as its GET around both, so it gets the same answer, without the body.
    handler = serve_cached_hits(app.asgi_handler, lambda: getattr(app.state, "services", None))
    app.asgi_handler = observe(answer_head(guard(handler)), metrics, access_log=settings.access_log)
    app.state.admin = create_admin_app(operations, access_log=settings.access_log)
    return app


def grace_seconds(settings: Settings) -> float:
    """How long a superseded version outlives its successor in the snapshot
    directory: a follower maps a version within a tick or two of reading its
    pointer (checksums included), and once mapped, removal cannot hurt it. Two
    refresh intervals, and never under a minute, leaves a wide margin."""
    return max(60.0, 2 * settings.refresh_seconds)


def silence_seconds(settings: Settings) -> float:
    """How long the refresher's lock session may stay silent before PostgreSQL
    ends it and another process takes over (a host gone, a process frozen): half
    a refresh interval, so that the silence, a follower's tick and the next
    refresh with its publish fit in two intervals, and never under 2.5 s, which
    a heartbeat four times as frequent does not miss on a busy host (a missed
    one costs a takeover, never a wrong answer)."""
    return max(2.5, settings.refresh_seconds / 2)


def create_admin_app(operations: Operations, *, access_log: bool) -> Litestar:
    """Detailed ``/healthz``, ``/metrics`` and ``/readyz``, without credentials: for
    the admin listener only. It has no lifespan of its own; it reads what the
    public app's refresher writes."""
    admin = Litestar(
        route_handlers=health.ADMIN_ROUTES,
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
        debug=False,
        logging_config=None,
        state=State({"operations": operations}),
    )
    admin.asgi_handler = observe(
        answer_head(admin.asgi_handler),
        operations.metrics,
        access_log=access_log,
        route_prefix="admin:",
    )
    return admin
