"""The ``kenbun-analytics`` command. Every flag defaults to an environment variable."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from kenbun_analytics.errors import KenbunError
from kenbun_analytics.settings import Settings, load_settings
from kenbun_analytics.source.roles import ROLES

logger = logging.getLogger("kenbun_analytics")


def _env(name: str, help_text: str) -> str:
    return f"{help_text} (env {name})"


def _add_database(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument(
        "--database-url",
        default=environ.get("KENBUN_DATABASE_URL"),
        help=_env("KENBUN_DATABASE_URL", "libpq URL of the kenbun database"),
    )


def _add_server(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "--host",
        default=settings.host,
        help=_env("KENBUN_HOST", f"address to bind (default {settings.host})"),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=settings.port,
        help=_env("KENBUN_PORT", f"port to bind (default {settings.port})"),
    )
    parser.add_argument(
        "--admin-host",
        default=settings.admin_host,
        help=_env(
            "KENBUN_ADMIN_HOST",
            "address the admin listener binds: detailed /healthz, /metrics and /readyz, "
            f"without credentials; keep it off the public network (default {settings.admin_host})",
        ),
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        default=settings.admin_port,
        help=_env(
            "KENBUN_ADMIN_PORT",
            f"port of the admin listener; 0 turns it off (default {settings.admin_port})",
        ),
    )
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=settings.refresh_seconds,
        help=_env(
            "KENBUN_REFRESH_SECONDS",
            f"seconds between snapshot refreshes (default {settings.refresh_seconds:g})",
        ),
    )
    parser.add_argument(
        "--full-refresh-seconds",
        type=float,
        default=settings.full_refresh_seconds,
        help=_env(
            "KENBUN_FULL_REFRESH_SECONDS",
            "seconds between full reconciliations; refreshes in between apply only "
            f"what changed (default {settings.full_refresh_seconds:g})",
        ),
    )
    parser.add_argument(
        "--refresh-timeout-seconds",
        type=float,
        default=settings.refresh_timeout_seconds,
        help=_env(
            "KENBUN_REFRESH_TIMEOUT_SECONDS",
            f"statement timeout of refresh reads (default {settings.refresh_timeout_seconds:g})",
        ),
    )
    parser.add_argument(
        "--load-connections",
        type=int,
        default=settings.load_connections,
        help=_env(
            "KENBUN_LOAD_CONNECTIONS",
            "connections a full load reads an org unit's events on, side by side "
            f"(default {settings.load_connections})",
        ),
    )


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    settings = load_settings(environ)
    parser = argparse.ArgumentParser(
        prog="kenbun-analytics",
        description="UTM campaign analytics over snapshots of a kenbun PostgreSQL database.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the API and the snapshot scheduler",
        description="Run the API and the snapshot scheduler in one process.",
    )
    _add_database(serve, environ)
    _add_server(serve, settings)
    serve.add_argument(
        "--snapshot-dir",
        default=settings.snapshot_dir,
        help=_env(
            "KENBUN_SNAPSHOT_DIR",
            "a directory shared by every process of a deployment: one elected process "
            "refreshes and publishes its snapshots there, the others map them "
            "(default: none, this process refreshes and holds its snapshots alone)",
        ),
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=settings.workers,
        help=_env(
            "KENBUN_WORKERS",
            "processes serving the one port, all mapping the snapshot directory; more "
            "than 1 needs --snapshot-dir; worker i's admin listener is on --admin-port + i "
            f"(default {settings.workers})",
        ),
    )
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help=_env("KENBUN_NO_MIGRATE", "do not apply missing migrations at start"),
    )

    demo = commands.add_parser(
        "demo",
        help="embedded PostgreSQL + demo data + the service",
        description="Start an embedded PostgreSQL, migrate it, seed a demo world if it is "
        "empty, print credentials and curl commands, and serve.",
    )
    _add_server(demo, settings)
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path(environ["KENBUN_DATA_DIR"]) if environ.get("KENBUN_DATA_DIR") else None,
        help=_env(
            "KENBUN_DATA_DIR",
            "where the embedded database lives "
            "(default: the user data dir, e.g. ~/.local/share/kenbun-analytics)",
        ),
    )
    demo.add_argument(
        "--events",
        type=int,
        default=int(environ.get("KENBUN_DEMO_EVENTS", "60000")),
        help=_env(
            "KENBUN_DEMO_EVENTS", "events to seed into an empty demo database (default 60000)"
        ),
    )

    migrate = commands.add_parser(
        "migrate",
        help="create missing tables, indexes and triggers",
        description="Apply the packaged migrations that the database lacks. Safe to repeat; "
        "never drops or rewrites data.",
    )
    _add_database(migrate, environ)

    seed = commands.add_parser(
        "seed",
        help="write a deterministic demo world of N events",
        description="Write a realistic world (3 org units, leads, aliases, accounts, deals, "
        "events) generated inside PostgreSQL, the same for the same seed and anchor date.",
    )
    _add_database(seed, environ)
    seed.add_argument(
        "--events",
        type=int,
        default=int(environ.get("KENBUN_SEED_EVENTS", "100000")),
        help=_env("KENBUN_SEED_EVENTS", "number of events (default 100000)"),
    )
    seed.add_argument(
        "--seed",
        type=int,
        default=int(environ.get("KENBUN_SEED", "1")),
        help=_env("KENBUN_SEED", "random seed (default 1)"),
    )
    seed.add_argument(
        "--anchor-date",
        type=date.fromisoformat,
        default=date.fromisoformat(environ["KENBUN_SEED_ANCHOR"])
        if environ.get("KENBUN_SEED_ANCHOR")
        else None,
        help=_env(
            "KENBUN_SEED_ANCHOR", "last day of the event history, YYYY-MM-DD (default today)"
        ),
    )

    _add_credentials(commands, environ)
    _add_users(commands, environ)
    return parser


def _add_credentials(commands: Any, environ: Mapping[str, str]) -> None:
    credentials = commands.add_parser("credentials", help="issue, revoke and list credentials")
    actions = credentials.add_subparsers(dest="action", required=True, metavar="ACTION")
    token = actions.add_parser("create-token", help="print a new personal access token once")
    _add_database(token, environ)
    token.add_argument("--email", required=True, help="the user the token acts as")
    token.add_argument("--name", required=True, help="a label for the token")
    token.add_argument(
        "--expires-in-days", type=float, default=None, help="never expires if omitted"
    )
    account = actions.add_parser(
        "create-service-account", help="print a new client id and secret once"
    )
    _add_database(account, environ)
    account.add_argument("--org-unit", required=True, help="the org unit (UUID) it belongs to")
    account.add_argument("--name", required=True, help="a label for the account")
    account.add_argument(
        "--scope",
        action="append",
        default=None,
        help="a scope; repeat for several (default analytics:read)",
    )
    revoke_token = actions.add_parser("revoke-token", help="revoke a personal access token by id")
    _add_database(revoke_token, environ)
    revoke_token.add_argument("token_id")
    revoke_account = actions.add_parser("revoke-service-account", help="revoke a service account")
    _add_database(revoke_account, environ)
    revoke_account.add_argument("client_id")
    listing = actions.add_parser("list", help="list credentials (never their secrets)")
    _add_database(listing, environ)


def _add_users(commands: Any, environ: Mapping[str, str]) -> None:
    users = commands.add_parser("users", help="local users, org units and memberships")
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    unit = actions.add_parser("create-org-unit", help="create an org unit; prints its id")
    _add_database(unit, environ)
    unit.add_argument("--name", required=True)
    create = actions.add_parser("create", help="create a user (or set its default org unit)")
    _add_database(create, environ)
    create.add_argument("--email", required=True)
    create.add_argument("--default-org-unit", default=None, help="UUID of the default org unit")
    grant = actions.add_parser("grant", help="give a user a role in an org unit")
    _add_database(grant, environ)
    grant.add_argument("--email", required=True)
    grant.add_argument("--org-unit", required=True)
    grant.add_argument("--role", required=True, choices=ROLES)
    remove = actions.add_parser("revoke", help="remove a user's membership of an org unit")
    _add_database(remove, environ)
    remove.add_argument("--email", required=True)
    remove.add_argument("--org-unit", required=True)
    for name, text in (("disable", "disable a user"), ("enable", "enable a user again")):
        toggle = actions.add_parser(name, help=text)
        _add_database(toggle, environ)
        toggle.add_argument("--email", required=True)


def _source(args: argparse.Namespace) -> Any:
    from kenbun_analytics.source.postgres import Source

    if not args.database_url:
        raise SystemExit("kenbun-analytics: give --database-url or set KENBUN_DATABASE_URL")
    return Source(args.database_url)


def serve_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """The settings of ``serve``: the environment's (:func:`load_settings`, which reads
    ``KENBUN_NO_MIGRATE`` with the rest), then the flags; ``--no-migrate`` can only
    turn migrations off on top of it."""
    settings = replace(
        _settings(args, environ, args.database_url),
        snapshot_dir=args.snapshot_dir or None,
        workers=args.workers,
    )
    return replace(settings, migrate=False) if args.no_migrate else settings


def _settings(args: argparse.Namespace, environ: Mapping[str, str], database_url: str) -> Settings:
    return replace(
        load_settings(environ),
        database_url=database_url,
        host=args.host,
        port=args.port,
        admin_host=args.admin_host,
        admin_port=args.admin_port,
        refresh_seconds=args.refresh_seconds,
        full_refresh_seconds=args.full_refresh_seconds,
        refresh_timeout_seconds=args.refresh_timeout_seconds,
        load_connections=max(1, args.load_connections),
    )


def _graceful_server_class() -> Any:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """A uvicorn server that returns after a graceful SIGINT/SIGTERM shutdown.

        uvicorn re-raises the signal once it has shut down, which would skip the
        caller's cleanup (the demo's embedded PostgreSQL); the shutdown already
        happened, so we forget the signal instead and exit 0.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return GracefulServer


def serve_workers(settings: Settings) -> None:
    """``serve --workers N``: bind the public port once and run N workers on it
    (:mod:`kenbun_analytics.web.workers`)."""
    from kenbun_analytics.web.workers import bind, supervise

    supervise(settings, bind(settings.host, settings.port), serve_worker)


def serve_worker(settings: Settings, sockets: list[Any]) -> None:
    """One worker of ``serve --workers N``, in a process of its own."""
    from kenbun_analytics.web.logs import configure_logging

    configure_logging()
    serve(settings, sockets=sockets)


def serve(settings: Settings, *, sockets: list[Any] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; uvicorn lets requests in flight finish.

    With an admin port, a second uvicorn server on the same event loop serves the
    admin app (:func:`kenbun_analytics.web.app.create_admin_app`) on
    ``admin_host:admin_port``. Its socket is bound before anything starts, so a
    port in use stops the process at once. It keeps answering while the API
    drains after a signal, and stops after the API has.
    """
    import asyncio

    import uvicorn

    from kenbun_analytics.web.app import create_app
    from kenbun_analytics.web.serving import uvicorn_options

    _GracefulServer = _graceful_server_class()  # noqa: N806 - a class

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=30,
        **uvicorn_options(),
    )
    server = _GracefulServer(config)
    if not settings.admin_port:
        server.run(sockets=sockets)
        return
    admin_config = uvicorn.Config(
        app.state.admin,
        host=settings.admin_host,
        port=settings.admin_port,
        log_level="info",
        timeout_graceful_shutdown=5,
        **{**uvicorn_options(), "lifespan": "off"},
    )
    try:
        admin_socket = admin_config.bind_socket()
    except SystemExit:  # uvicorn has logged why; exit with its start-up failure code
        logger.error(  # noqa: TRY400 - one line, the reason is uvicorn's line before
            "the admin listener cannot bind %s:%d: set --admin-host and --admin-port "
            "(KENBUN_ADMIN_HOST, KENBUN_ADMIN_PORT; port 0 turns it off)",
            settings.admin_host,
            settings.admin_port,
        )
        raise
    admin_server = _admin_server_class()(admin_config)

    async def both() -> None:
        admin_task = asyncio.create_task(admin_server.serve(sockets=[admin_socket]))
        try:
            await server.serve(sockets=sockets)
        finally:
            admin_server.should_exit = True
            await admin_task

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(both())


def _admin_server_class() -> Any:
    import uvicorn

    class AdminServer(uvicorn.Server):
        """A uvicorn server that leaves the signals to the API's server, which
        stops it once the API has shut down."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return AdminServer


def _serve_command(settings: Settings) -> None:
    if settings.workers > 1 and not settings.snapshot_dir:
        raise SystemExit(
            "kenbun-analytics: --workers above 1 needs --snapshot-dir (KENBUN_SNAPSHOT_DIR): "
            "the workers share their snapshots through it"
        )
    if settings.workers > 1:
        serve_workers(settings)
    else:
        serve(settings)


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.command in {"serve", "demo"}:
        from kenbun_analytics.web.logs import configure_logging

        configure_logging()
    else:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "serve":
        if not args.database_url:
            raise SystemExit("kenbun-analytics: give --database-url or set KENBUN_DATABASE_URL")
        # No database round trip here: the service starts even while PostgreSQL is
        # down, and the refresher migrates and loads once it answers.
        _serve_command(serve_settings(args, environ))
        return 0
    if args.command == "demo":
        from kenbun_analytics.local.demo import run_demo

        run_demo(args, lambda url: _settings(args, environ, url), serve)
        return 0
    from kenbun_analytics.local import admin

    source = _source(args)
    try:
        if args.command == "migrate":
            applied = source.migrate()
            print("applied: " + ", ".join(applied) if applied else "nothing to apply")
        elif args.command == "seed":
            from kenbun_analytics.local.seed import seed_world, terminal_progress

            source.migrate()
            result = seed_world(
                source,
                events=args.events,
                seed=args.seed,
                anchor=args.anchor_date,
                progress=terminal_progress,
            )
            print("seeded org units: " + " ".join(result.org_unit_ids))
        elif args.command == "credentials":
            _credentials(args, source, admin)
        elif args.command == "users":
            _users(args, source, admin)
    finally:
        source.close()
    return 0


def _credentials(args: argparse.Namespace, source: Any, admin: Any) -> None:
    if args.action == "create-token":
        issued = admin.create_token(source, args.email, args.name, args.expires_in_days)
        print(f"token id: {issued.id}\ntoken (shown once): {issued.secret}")
    elif args.action == "create-service-account":
        issued = admin.create_service_account(
            source, args.org_unit, args.name, args.scope or ["analytics:read"]
        )
        print(f"client_id: {issued.client_id}\nclient_secret (shown once): {issued.secret}")
    elif args.action == "revoke-token":
        admin.revoke_token(source, args.token_id)
    elif args.action == "revoke-service-account":
        admin.revoke_service_account(source, args.client_id)
    else:
        for row in admin.list_credentials(source):
            print("\t".join("" if v is None else str(v) for v in row.values()))


def _users(args: argparse.Namespace, source: Any, admin: Any) -> None:
    if args.action == "create-org-unit":
        print(admin.create_org_unit(source, args.name))
    elif args.action == "create":
        print(admin.create_user(source, args.email, args.default_org_unit))
    elif args.action == "grant":
        admin.add_membership(source, args.email, args.org_unit, args.role)
    elif args.action == "revoke":
        admin.remove_membership(source, args.email, args.org_unit)
    else:
        admin.set_user_disabled(source, args.email, disabled=args.action == "disable")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args = build_parser(environ).parse_args(argv)
        return _run(args, environ)
    except KenbunError as error:
        print(f"kenbun-analytics: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
