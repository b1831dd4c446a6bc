"""The command line: the demo starts and stops cleanly, seeding is deterministic."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import psutil
import psycopg
import pytest

from kenbun_analytics.cli import build_parser, main, serve_settings
from kenbun_analytics.local.embedded import free_port
from kenbun_analytics.local.seed import seed_world
from kenbun_analytics.source.postgres import Source


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _listening(port: int) -> bool:
    try:
        _get(f"http://127.0.0.1:{port}/healthz")
    except OSError:
        return False
    return True


def run_demo(data_dir: Path) -> tuple[str, str | None, int]:
    """Run the demo until ready, query it with its token, press Ctrl-C.

    Returns its output, the campaigns body it served, and the postmaster's pid.
    """
    port, admin_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kenbun_analytics.cli",
            "demo",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
            "--events",
            "3000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        token = re.search(r"token\s+(kbn_pat_\w+)", "".join(lines))
        assert token, "".join(lines)
        deadline = time.monotonic() + 60
        while not (_listening(port) and _get(f"http://127.0.0.1:{port}/readyz")[0] == 200):
            assert process.poll() is None, "".join(lines)
            assert time.monotonic() < deadline
            time.sleep(0.3)
        status, body = _get(
            f"http://127.0.0.1:{port}/analytics/campaigns?group_by=source", token.group(1)
        )
        assert status == 200
        assert _get(f"http://127.0.0.1:{admin_port}/metrics")[0] == 200
        postmaster_pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        lines.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, "".join(lines)
    return "".join(lines), body.decode(), postmaster_pid


def test_demo_serves_then_stops_without_orphans_and_reuses_its_data(tmp_path: Path) -> None:
    """Ctrl-C stops the server and the database; a second run reuses the data."""
    output, body, postmaster_pid = run_demo(tmp_path / "demo")
    assert "seeding" in output
    assert body is not None
    assert '"group_by":"source"' in body
    assert not psutil.pid_exists(postmaster_pid)
    again, body_again, _ = run_demo(tmp_path / "demo")
    assert "seeding" not in again
    assert body_again == body


def test_seed_is_deterministic(server_url: str, database_url: str) -> None:
    """The same seed and anchor write the same rows."""
    other_url = database_url.rsplit("/", 1)[0] + "/kenbun_seed_twin"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS kenbun_seed_twin")
        admin.execute("CREATE DATABASE kenbun_seed_twin TEMPLATE kenbun_test_template")
    digests = []
    for url in (database_url, other_url):
        source = Source(url)
        seed_world(source, events=2000, seed=42, anchor=date(2026, 6, 30))
        source.close()
        with psycopg.connect(url) as connection:
            digests.append(
                connection.execute(
                    "SELECT md5(string_agg(concat_ws('|', org_unit_id, lead_id, occurred_at, metadata::text, "
                    "normalized, normalized_parent), ',' ORDER BY id)), count(*) FROM events"
                ).fetchone()
            )
    assert digests[0] == digests[1]
    assert digests[0] is not None
    assert digests[0][1] > 2000  # the events plus the duplicates of their normalized pairs


def test_every_flag_reads_an_environment_variable() -> None:
    """Defaults come from KENBUN_* variables, and --help documents each."""
    parser = build_parser(
        {
            "KENBUN_DATABASE_URL": "postgresql://db",
            "KENBUN_REFRESH_SECONDS": "7",
            "KENBUN_PORT": "9001",
            "KENBUN_LOAD_CONNECTIONS": "4",
            "KENBUN_ADMIN_HOST": "10.0.0.5",
            "KENBUN_ADMIN_PORT": "9101",
        }
    )
    args = parser.parse_args(["serve"])
    assert (args.database_url, args.refresh_seconds, args.port) == ("postgresql://db", 7.0, 9001)
    assert args.load_connections == 4
    assert (args.admin_host, args.admin_port) == ("10.0.0.5", 9101)
    defaults = build_parser({}).parse_args(["serve"])
    assert (defaults.admin_host, defaults.admin_port) == ("127.0.0.1", 8001)
    assert parser._subparsers is not None
    subcommands = parser._subparsers._group_actions[0]
    assert isinstance(subcommands, argparse._SubParsersAction)
    help_text = subcommands.choices["serve"].format_help()
    for variable in (
        "KENBUN_DATABASE_URL",
        "KENBUN_HOST",
        "KENBUN_PORT",
        "KENBUN_REFRESH_SECONDS",
        "KENBUN_LOAD_CONNECTIONS",
        "KENBUN_ADMIN_HOST",
        "KENBUN_ADMIN_PORT",
    ):
        assert variable in help_text


@pytest.mark.parametrize(
    ("environ", "flags", "migrate"),
    [
        ({}, [], True),
        ({"KENBUN_NO_MIGRATE": "on"}, [], False),
        ({"KENBUN_NO_MIGRATE": "true"}, [], False),
        ({"KENBUN_NO_MIGRATE": "off"}, [], True),
        ({}, ["--no-migrate"], False),
        ({"KENBUN_NO_MIGRATE": "off"}, ["--no-migrate"], False),
    ],
)
def test_no_migrate_is_read_once_for_serve(
    environ: dict[str, str], flags: list[str], migrate: bool
) -> None:
    """KENBUN_NO_MIGRATE reaches serve's settings in every spelling the settings accept."""
    environ = {"KENBUN_DATABASE_URL": "postgresql://db", **environ}
    args = build_parser(environ).parse_args(["serve", *flags])
    assert serve_settings(args, environ).migrate is migrate


def test_migrate_command(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """migrate on an up-to-date database applies nothing and says so."""
    assert main(["migrate", "--database-url", database_url], environ={}) == 0
    assert "nothing to apply" in capsys.readouterr().out


def test_credentials_lifecycle_through_the_cli(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """users and credentials commands create what the API accepts, and revoke it."""
    from litestar.testing import TestClient

    from support.world import basic
    from tests.conftest import make_app

    def run(*argv: str) -> str:
        assert main([*argv, "--database-url", database_url], environ={}) == 0
        return capsys.readouterr().out

    unit = run("users", "create-org-unit", "--name", "EMEA").strip()
    run("users", "create", "--email", "ann@example.com", "--default-org-unit", unit)
    run("users", "grant", "--email", "ann@example.com", "--org-unit", unit, "--role", "analyst")
    issued = run("credentials", "create-token", "--email", "ann@example.com", "--name", "laptop")
    token_id = re.search(r"token id: (\S+)", issued).group(1)  # type: ignore[union-attr]
    token = re.search(r"(kbn_pat_\w+)", issued).group(1)  # type: ignore[union-attr]
    account = run("credentials", "create-service-account", "--org-unit", unit, "--name", "bi")
    client_id = re.search(r"client_id: (\S+)", account).group(1)  # type: ignore[union-attr]
    secret = re.search(r"(kbn_sas_\w+)", account).group(1)  # type: ignore[union-attr]
    listing = run("credentials", "list")
    assert token not in listing
    assert secret not in listing
    assert client_id in listing

    with TestClient(make_app(database_url, auth_cache_seconds=0)) as client:
        client.app.state.refresher.refresh(wait=True)
        bearer = {"Authorization": f"Bearer {token}"}
        service = {"Authorization": basic(client_id, secret)}
        assert client.get("/analytics/campaigns", headers=bearer).status_code == 200
        assert client.get("/analytics/campaigns", headers=service).status_code == 200
        run("users", "revoke", "--email", "ann@example.com", "--org-unit", unit)
        assert client.get("/analytics/campaigns", headers=bearer).status_code == 403
        run("credentials", "revoke-token", token_id)
        run("credentials", "revoke-service-account", client_id)
        assert client.get("/analytics/campaigns", headers=bearer).status_code == 401
        assert client.get("/analytics/campaigns", headers=service).status_code == 401


def test_snapshot_dir_and_workers_read_their_variables() -> None:
    """KENBUN_SNAPSHOT_DIR and KENBUN_WORKERS reach serve's settings; flags win."""
    environ = {
        "KENBUN_DATABASE_URL": "postgresql://db",
        "KENBUN_SNAPSHOT_DIR": "/srv/snapshots",
        "KENBUN_WORKERS": "3",
    }
    settings = serve_settings(build_parser(environ).parse_args(["serve"]), environ)
    assert (settings.snapshot_dir, settings.workers) == ("/srv/snapshots", 3)
    flags = ["serve", "--snapshot-dir", "/mnt/other", "--workers", "2"]
    settings = serve_settings(build_parser(environ).parse_args(flags), environ)
    assert (settings.snapshot_dir, settings.workers) == ("/mnt/other", 2)
    defaults = serve_settings(build_parser({}).parse_args(["serve"]), {})
    assert (defaults.snapshot_dir, defaults.workers) == (None, 1)
