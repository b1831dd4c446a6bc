"""Settings, loaded by pure functions from a mapping (normally ``os.environ``).

Every field names the environment variable it reads; the CLI flags default to
the same variables, so a flag and its variable always mean the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kenbun_analytics.errors import SettingsError


@dataclass(frozen=True, slots=True)
class Settings:
    """How the service reaches PostgreSQL, refreshes its snapshots and serves."""

    database_url: str | None = None
    """``KENBUN_DATABASE_URL``: libpq URL of the kenbun database."""

    host: str = "127.0.0.1"
    """``KENBUN_HOST``: address the HTTP server binds."""

    port: int = 8000
    """``KENBUN_PORT``: port the HTTP server binds."""

    admin_host: str = "127.0.0.1"
    """``KENBUN_ADMIN_HOST``: address the admin listener binds (detailed
    ``/healthz``, ``/metrics``, ``/readyz``). Loopback by default: its answers name
    every org unit and the database's errors, so it is for the operator's network
    only, never the public one."""

    admin_port: int = 8001
    """``KENBUN_ADMIN_PORT``: port of the admin listener; 0 turns it off."""

    refresh_seconds: float = 30.0
    """``KENBUN_REFRESH_SECONDS``: interval between snapshot refreshes."""

    full_refresh_seconds: float = 600.0
    """``KENBUN_FULL_REFRESH_SECONDS``: interval between full reconciliations;
    the refreshes in between apply only what changed."""

    refresh_timeout_seconds: float = 120.0
    """``KENBUN_REFRESH_TIMEOUT_SECONDS``: a refresh statement running longer is
    cancelled by PostgreSQL and the refresh is retried on the next tick."""

    load_connections: int = 1
    """``KENBUN_LOAD_CONNECTIONS``: connections a full load reads an org unit's
    events on, side by side (each reads every n-th event id); one more reads its
    per-lead facts meanwhile. Raise it when PostgreSQL runs on cores of its own:
    on cores shared with the service, parallel reads slow the queries down."""

    isolated_loads: bool = True
    """``KENBUN_ISOLATED_LOADS``: run the loads of a full refresh in a child
    process at a lower CPU priority (:mod:`kenbun_analytics.refresh.child`), so that they
    neither queue the requests behind their work nor leave their transient
    memory with the server. Off, they run on the server's own threads."""

    auth_cache_seconds: float = 2.0
    """``KENBUN_AUTH_CACHE_SECONDS``: how long a credential lookup is reused.
    Revocation takes effect within this plus one lookup; keep it under 5."""

    result_cache_bytes: int = 64 * 1024 * 1024
    """``KENBUN_RESULT_CACHE_BYTES``: upper bound of the encoded-response cache."""

    secure_cookies: bool = False
    """``KENBUN_SECURE_COOKIES``: mark the active-org-unit cookie ``Secure``
    (set it when the service is reached over HTTPS)."""

    auth_stale_seconds: float = 60.0
    """``KENBUN_AUTH_STALE_SECONDS``: while PostgreSQL is unreachable, a credential
    that was valid at its last lookup keeps working for this long (never past its
    expiry), so a short outage does not lock readers out of the last good snapshot.
    A credential revoked meanwhile works as long: each such answer is logged and
    counted (``kenbun_auth_stale_answers_total``); 0 turns it off."""

    rate_limit_per_second: float = 0.0
    """``KENBUN_RATE_LIMIT_PER_SECOND``: requests per second each credential may
    make on average; 0 turns rate limiting off."""

    rate_limit_burst: int = 0
    """``KENBUN_RATE_LIMIT_BURST``: requests a credential may make at once above
    the rate; 0 means twice the rate."""

    access_log: bool = True
    """``KENBUN_ACCESS_LOG``: write one JSON log line per request."""

    snapshot_dir: str | None = None
    """``KENBUN_SNAPSHOT_DIR``: the directory of published snapshots that every
    process of a deployment shares (:mod:`kenbun_analytics.refresh.published`). One
    elected process refreshes and publishes, the others map what it published.
    Unset: this process refreshes and holds its snapshots alone."""

    workers: int = 1
    """``KENBUN_WORKERS``: processes serving the one port (:mod:`kenbun_analytics.web.workers`);
    more than one needs ``snapshot_dir``, through which they share the snapshots."""

    migrate: bool = True
    """Apply missing migrations once PostgreSQL is reachable (``serve --no-migrate``
    or ``KENBUN_NO_MIGRATE`` turns it off)."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _number(environ: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, raw, "a number") from None
    if not value >= minimum:
        raise SettingsError(name, raw, f"a number of at least {minimum:g}")
    return value


def _flag(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise SettingsError(name, raw, "true or false")


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read the settings from ``environ``; unset variables keep their defaults."""
    defaults = Settings()
    auth_cache_seconds = _number(
        environ, "KENBUN_AUTH_CACHE_SECONDS", defaults.auth_cache_seconds, minimum=0
    )
    if auth_cache_seconds > 4:
        raise SettingsError(
            "KENBUN_AUTH_CACHE_SECONDS", str(auth_cache_seconds), "at most 4 seconds"
        )
    return Settings(
        database_url=environ.get("KENBUN_DATABASE_URL") or None,
        host=environ.get("KENBUN_HOST", defaults.host),
        port=int(_number(environ, "KENBUN_PORT", defaults.port, minimum=0)),
        admin_host=environ.get("KENBUN_ADMIN_HOST", defaults.admin_host),
        admin_port=int(_number(environ, "KENBUN_ADMIN_PORT", defaults.admin_port, minimum=0)),
        refresh_seconds=_number(
            environ, "KENBUN_REFRESH_SECONDS", defaults.refresh_seconds, minimum=0.1
        ),
        full_refresh_seconds=_number(
            environ, "KENBUN_FULL_REFRESH_SECONDS", defaults.full_refresh_seconds, minimum=0
        ),
        refresh_timeout_seconds=_number(
            environ, "KENBUN_REFRESH_TIMEOUT_SECONDS", defaults.refresh_timeout_seconds, minimum=1
        ),
        load_connections=int(
            _number(environ, "KENBUN_LOAD_CONNECTIONS", defaults.load_connections, minimum=1)
        ),
        isolated_loads=_flag(environ, "KENBUN_ISOLATED_LOADS", default=defaults.isolated_loads),
        auth_cache_seconds=auth_cache_seconds,
        result_cache_bytes=int(
            _number(environ, "KENBUN_RESULT_CACHE_BYTES", defaults.result_cache_bytes, minimum=0)
        ),
        secure_cookies=_flag(environ, "KENBUN_SECURE_COOKIES", default=defaults.secure_cookies),
        auth_stale_seconds=_number(
            environ, "KENBUN_AUTH_STALE_SECONDS", defaults.auth_stale_seconds, minimum=0
        ),
        rate_limit_per_second=_number(
            environ, "KENBUN_RATE_LIMIT_PER_SECOND", defaults.rate_limit_per_second, minimum=0
        ),
        rate_limit_burst=int(
            _number(environ, "KENBUN_RATE_LIMIT_BURST", defaults.rate_limit_burst, minimum=0)
        ),
        access_log=_flag(environ, "KENBUN_ACCESS_LOG", default=defaults.access_log),
        snapshot_dir=environ.get("KENBUN_SNAPSHOT_DIR") or None,
        workers=int(_number(environ, "KENBUN_WORKERS", defaults.workers, minimum=1)),
        migrate=not _flag(environ, "KENBUN_NO_MIGRATE", default=not defaults.migrate),
    )
