"""Request ids, security headers, access logs and Prometheus metrics (the JSON
log format is :mod:`kenbun_analytics.web.logs`).

:func:`observe` wraps the whole ASGI app, outside Litestar's exception
handling, so every answer (404s, 413s and 429s included) gets an
``X-Request-Id`` header, the security headers of
:mod:`kenbun_analytics.web.headers`, one JSON access-log line and its place in the
request metrics. Snapshot and cache metrics are read when ``/metrics`` (on the
admin listener) is scraped, so the hot path only counts and times the request
itself.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kenbun_analytics.engine.layout import resident_bytes
from kenbun_analytics.store import RefreshStatus, SnapshotStore, StoreStatus
from kenbun_analytics.web.cache import ResultCache
from kenbun_analytics.web.headers import SECURITY_HEADERS
from kenbun_analytics.web.logs import JsonFormatter, configure_logging, redact, request_id
from kenbun_analytics.web.schemas import ErrorBody, json_encoder

__all__ = ["JsonFormatter", "Metrics", "configure_logging", "observe", "redact", "request_id"]

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")

access_logger = logging.getLogger("kenbun_analytics.access")
logger = logging.getLogger(__name__)


# ----------------------------------------------------------------- metrics --

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_REFRESH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _SnapshotCollector(Collector):
    """Snapshot rows and ages, refresh failures and the result cache, read at scrape."""

    def __init__(
        self,
        store: SnapshotStore,
        cache: ResultCache,
        status: RefreshStatus,
        store_status: StoreStatus | None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._status = status
        self._store_status = store_status

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        rows = GaugeMetricFamily(
            "kenbun_snapshot_rows",
            "Counting events in the org unit's snapshot.",
            labels=["org_unit"],
        )
        age = GaugeMetricFamily(
            "kenbun_snapshot_age_seconds",
            "Seconds since the org unit's serving snapshot was taken.",
            labels=["org_unit"],
        )
        held = GaugeMetricFamily(
            "kenbun_snapshot_bytes",
            "Bytes the org unit's serving snapshot holds in memory.",
            labels=["org_unit"],
        )
        version = GaugeMetricFamily(
            "kenbun_snapshot_version",
            "Version of the org unit's serving snapshot (with a snapshot directory, the "
            "published version: the same on every process serving it).",
            labels=["org_unit"],
        )
        for unit, snapshot in sorted(self._store.all().items()):
            version.add_metric([unit], snapshot.version)
            rows.add_metric([unit], snapshot.layout.events.height)
            held.add_metric([unit], resident_bytes(snapshot.layout))
            age.add_metric([unit], (now - snapshot.taken_at).total_seconds())
        load = GaugeMetricFamily(
            "kenbun_snapshot_load_seconds",
            "Duration of the org unit's last snapshot load or update.",
            labels=["org_unit"],
        )
        for unit, seconds in sorted(self._status.unit_seconds.items()):
            load.add_metric([unit], seconds)
        failures = CounterMetricFamily(
            "kenbun_snapshot_refresh_failures",
            'Failed refreshes per org unit; org_unit="*" counts refreshes that failed '
            "before reaching any org unit (PostgreSQL unreachable).",
            labels=["org_unit"],
        )
        for unit, count in sorted(self._status.failures.items()):
            failures.add_metric([unit], count)
        yield from (rows, held, age, load, failures, version)
        if self._store_status is not None:
            yield from _store_metrics(self._store_status)
        yield CounterMetricFamily(
            "kenbun_result_cache_hits", "Result cache hits.", value=self._cache.hits
        )
        yield CounterMetricFamily(
            "kenbun_result_cache_misses", "Result cache misses.", value=self._cache.misses
        )
        yield GaugeMetricFamily(
            "kenbun_result_cache_bytes",
            "Bytes held by the result cache.",
            value=self._cache.size_bytes,
        )
        yield GaugeMetricFamily(
            "kenbun_result_cache_entries", "Entries in the result cache.", value=len(self._cache)
        )


def _store_metrics(status: StoreStatus) -> Iterator[Metric]:
    role = GaugeMetricFamily(
        "kenbun_store_role",
        "1 for this process's role in the deployment: refresher (holds the lock) or follower.",
        labels=["role"],
    )
    for name in ("refresher", "follower"):
        role.add_metric([name], 1 if status.role == name else 0)
    yield role
    yield GaugeMetricFamily(
        "kenbun_store_bytes",
        "Bytes of the snapshot directory's files (versions kept and publishes in flight).",
        value=status.bytes_held,
    )
    yield GaugeMetricFamily(
        "kenbun_store_last_publish_timestamp_seconds",
        "When this process last published a version (0: never).",
        value=status.last_publish_at.timestamp() if status.last_publish_at else 0,
    )
    yield CounterMetricFamily(
        "kenbun_store_publishes", "Versions this process published.", value=status.publishes
    )
    yield GaugeMetricFamily(
        "kenbun_store_error",
        "1 while the last publish, open or clean-up of the snapshot directory failed.",
        value=1 if status.last_error else 0,
    )


class Metrics:
    """The process's Prometheus registry (one per app, so tests can build many apps)."""

    def __init__(
        self,
        store: SnapshotStore,
        cache: ResultCache,
        status: RefreshStatus,
        store_status: StoreStatus | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kenbun_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kenbun_http_request_duration_seconds",
            "Time from the request's arrival to its last body byte, by route and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refreshes = Histogram(
            "kenbun_snapshot_refresh_duration_seconds",
            "Duration of whole snapshot refreshes, by outcome: full, incremental or failed.",
            ["outcome"],
            buckets=_REFRESH_BUCKETS,
            registry=self.registry,
        )
        self.stale_auth = Counter(
            "kenbun_auth_stale_answers",
            "Requests let in on a credential's last successful lookup, older than the "
            "auth cache, because PostgreSQL could not be asked (KENBUN_AUTH_STALE_SECONDS).",
            registry=self.registry,
        )
        self.refused = Counter(
            "kenbun_store_refused_versions",
            "Published versions refused because a file did not match the manifest "
            "(size or checksum); the process kept serving the version it held.",
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(store, cache, status, store_status))

    def refreshed(self, outcome: str, seconds: float) -> None:
        self.refreshes.labels(outcome).observe(seconds)


def _route(scope: dict[str, Any], prefix: str) -> str:
    template = scope.get("path_template")
    if not template:
        return prefix + "unmatched"
    if template.startswith("/analytics/campaigns/{"):
        return "/analytics/campaigns/{campaign_name}/leads"
    return prefix + str(template)


def _incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _SAFE_REQUEST_ID.fullmatch(value):
            return value.decode("ascii")
    return secrets.token_hex(8)


_CRASHED = json_encoder.encode(
    ErrorBody(status=500, detail="internal error; retry later or contact support")
)


def observe(app: Any, metrics: Metrics, *, access_log: bool, route_prefix: str = "") -> Any:
    """Wrap an ASGI app: request id, security headers, access log line and request
    metrics. ``route_prefix`` starts the route label of each request (the admin
    listener's are ``admin:/healthz``, ``admin:/metrics``...)."""

    async def observed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _incoming_request_id(scope.get("headers", []))
        token = request_id.set(rid)
        status = 500
        started_response = False

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = [
                    *message.get("headers", []),
                    *SECURITY_HEADERS,
                    (b"x-request-id", rid.encode("ascii")),
                ]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        except Exception as error:
            if started_response:
                raise  # the server closes the connection mid-answer
            # A fault outside Litestar's exception handling (the guard, the cached
            # hits): the usual JSON error, with every header, not the server's text.
            logger.error(  # noqa: TRY400 - one line, no traceback
                "unexpected %s before answering a request", type(error).__name__
            )
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_CRASHED)).encode()),
                    ],
                }
            )
            await send_with_id({"type": "http.response.body", "body": _CRASHED})
        finally:
            seconds = time.perf_counter() - started
            route, method = _route(scope, route_prefix), scope.get("method", "")
            code = str(status)
            metrics.requests.labels(route, method, code).inc()
            metrics.latency.labels(route, method, code).observe(seconds)
            if access_log:
                access_logger.info(
                    "request",
                    extra={
                        "fields": {
                            "request_id": rid,
                            "method": method,
                            "route": route,
                            "status": status,
                            "duration_ms": round(seconds * 1000, 3),
                        }
                    },
                )
            request_id.reset(token)

    return observed
