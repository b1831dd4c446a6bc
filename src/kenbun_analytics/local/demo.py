"""``kenbun-analytics demo``: embedded PostgreSQL, demo data, credentials, and the service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from kenbun_analytics.local import admin
from kenbun_analytics.local.embedded import EmbeddedPostgres
from kenbun_analytics.local.seed import org_unit_id, seed_world, terminal_progress
from kenbun_analytics.settings import Settings
from kenbun_analytics.source.postgres import Source

DEMO_EMAIL = "demo@kenbun.example"
DEMO_SEED = 2026


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("kenbun-analytics")) / "demo-postgres"


def prepare_demo(
    source: Source, *, events: int
) -> tuple[str, admin.IssuedSecret, admin.IssuedSecret]:
    """Migrate, seed when empty, and issue a fresh token and service account."""
    source.migrate()
    if not source.org_unit_ids():
        print(f"seeding {events} demo events (once; later runs reuse them)...", file=sys.stderr)
        seed_world(source, events=events, seed=DEMO_SEED, progress=terminal_progress)
    main_unit = org_unit_id(DEMO_SEED, 0)
    admin.create_user(source, DEMO_EMAIL, main_unit)
    for unit in source.org_unit_ids():
        admin.add_membership(source, DEMO_EMAIL, unit, "owner")
    token = admin.create_token(source, DEMO_EMAIL, "demo")
    account = admin.create_service_account(source, main_unit, "demo", ["analytics:read"])
    return main_unit, token, account


def run_demo(
    args: argparse.Namespace,
    settings_for: Callable[[str], Settings],
    serve: Callable[[Settings], None],
) -> None:
    data_dir: Path = args.data_dir or default_data_dir()
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    try:
        source = Source(url)
        try:
            main_unit, token, account = prepare_demo(source, events=args.events)
        finally:
            source.close()
        base = f"http://{args.host}:{args.port}"
        operations = (
            f"http://{args.admin_host}:{args.admin_port}/healthz and /metrics"
            if args.admin_port
            else "off (--admin-port 0)"
        )
        print(
            f"""
kenbun-analytics demo
  database        {url}  (data in {data_dir})
  API             {base}   OpenAPI: {base}/schema/openapi.json
  admin           {operations}
  token           {token.secret}
  service account {account.client_id}:{account.secret}

Try:
  curl -H "Authorization: Bearer {token.secret}" "{base}/analytics/campaigns?group_by=source"
  curl -u "{account.client_id}:{account.secret}" "{base}/analytics/campaigns?start_date=2026-01-01"
  curl -H "Authorization: Bearer {token.secret}" "{base}/org-units"

Ctrl-C stops the service and the database.
""",
            file=sys.stderr,
            flush=True,
        )
        del main_unit
        serve(settings_for(url))
    finally:
        server.stop()
