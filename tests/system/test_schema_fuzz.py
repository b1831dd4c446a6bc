"""Schemathesis against our own OpenAPI document, with and without credentials.

CI runs a short pass; ``benchmarks/reliability.py`` runs the long one (thousands of
requests) and reports it in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.world import World
from tests.conftest import LiveServer, live_server, make_app

MAX_EXAMPLES = int(os.environ.get("KENBUN_FUZZ_EXAMPLES", "25"))


def schemathesis(base: str, report: Path, *arguments: str) -> dict[str, object]:
    """Run the schemathesis CLI; its exit status and the run's JSON report."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base}/schema/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "2026",
        "--workers",
        "1",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--warnings",
        "off",
        *arguments,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    return {
        "returncode": result.returncode,
        "output": result.stdout[-4000:] + result.stderr[-2000:],
    }


@pytest.fixture
def live(world: World, database_url: str) -> Iterator[tuple[LiveServer, str]]:
    unit = world.org_unit("Acme")
    lead = world.lead(unit, level="Hot")
    for campaign in ("spring", "a/b", "%"):
        world.event(unit, lead=lead, campaign=campaign, source="news", medium="email")
    headers = world.reader(unit)
    with live_server(make_app(database_url)) as server:
        assert server.app.state.refresher.refresh(wait=True)
        yield server, headers["Authorization"]


@pytest.mark.parametrize("credentials", [True, False], ids=["with-credentials", "anonymous"])
def test_schemathesis_finds_no_server_error_or_schema_violation(
    live: tuple[LiveServer, str], credentials: bool, tmp_path: Path
) -> None:
    server, authorization = live
    arguments = ["-H", f"Authorization: {authorization}"] if credentials else []
    outcome = schemathesis(server.base, tmp_path / "report.json", *arguments)
    assert outcome["returncode"] == 0, outcome["output"]
    report = json.loads((tmp_path / "report.json").read_text())
    # campaigns, leads, org units (2), /healthz and /readyz; /metrics is on the admin listener
    assert report["operations"]["tested"] == report["operations"]["total"] >= 6
    assert report["test_cases"]["generated"] >= 100
    assert report["test_cases"]["with_failures"] == 0
    assert report["failures"] == []
    assert report["errors"] == []
