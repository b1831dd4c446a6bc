"""Metrics, request ids, JSON log lines and per-credential rate limits."""

from __future__ import annotations

import json
import logging
import re

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from kenbun_analytics.engine.layout import resident_bytes
from kenbun_analytics.errors import RateLimited
from kenbun_analytics.web.observability import JsonFormatter, redact
from kenbun_analytics.web.ratelimit import RateLimiter
from support.world import World
from tests.conftest import admin, make_app, refresh

Client = TestClient[Litestar]


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    world.event(unit, campaign="spring", lead=world.lead(unit, level="Hot"))
    return unit


@pytest.fixture
def headers(world: World, unit: str) -> dict[str, str]:
    return world.reader(unit)


def samples(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The metrics, as the admin listener serves them."""
    response = admin(client).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_count_requests_refreshes_snapshots_and_the_cache(
    unit: str, headers: dict[str, str], client: Client
) -> None:
    refresh(client)
    for _ in range(3):
        assert client.get("/analytics/campaigns", headers=headers).status_code == 200
    assert (
        client.get("/analytics/campaigns", params={"start_date": "x"}, headers=headers).status_code
        == 400
    )
    assert client.get("/analytics/campaigns/spring/leads", headers=headers).status_code == 200
    assert client.get("/nowhere").status_code == 404
    found = samples(client)

    def requests(route: str, status: str) -> float:
        key = (("method", "GET"), ("route", route), ("status", status))
        return found.get(("kenbun_http_requests_total", key), 0)

    assert requests("/analytics/campaigns", "200") == 3
    assert requests("/analytics/campaigns", "400") == 1
    assert requests("/analytics/campaigns/{campaign_name}/leads", "200") == 1
    assert requests("unmatched", "404") == 1
    bucket = (
        ("le", "+Inf"),
        ("method", "GET"),
        ("route", "/analytics/campaigns"),
        ("status", "200"),
    )
    assert found["kenbun_http_request_duration_seconds_bucket", bucket] == 3
    assert found["kenbun_snapshot_rows", (("org_unit", unit),)] == 1
    assert found["kenbun_snapshot_age_seconds", (("org_unit", unit),)] >= 0
    layout = client.app.state.services.store.get(unit).layout
    assert found["kenbun_snapshot_bytes", (("org_unit", unit),)] == resident_bytes(layout) > 0
    assert found["kenbun_snapshot_load_seconds", (("org_unit", unit),)] > 0
    assert found["kenbun_snapshot_refresh_duration_seconds_count", (("outcome", "full"),)] == 1
    assert found["kenbun_result_cache_hits_total", ()] == 2
    assert found["kenbun_result_cache_misses_total", ()] == 2
    assert found["kenbun_result_cache_bytes", ()] > 0
    assert found["kenbun_auth_stale_answers_total", ()] == 0
    # The scrape itself is counted apart from the public routes.
    scrape = (("method", "GET"), ("route", "admin:/metrics"), ("status", "200"))
    assert samples(client)["kenbun_http_requests_total", scrape] == 1


def test_failed_refreshes_are_counted_per_org_unit(world: World, unit: str, client: Client) -> None:
    refresh(client)
    world.sql("ALTER TABLE events RENAME TO events_away")
    refresher = client.app.state.refresher
    refresher.request_full()
    assert refresher.refresh(wait=True) is False
    found = samples(client)
    assert found["kenbun_snapshot_refresh_failures_total", (("org_unit", unit),)] == 1
    assert found["kenbun_snapshot_refresh_duration_seconds_count", (("outcome", "failed"),)] == 1
    world.sql("ALTER TABLE events_away RENAME TO events")


def test_every_answer_carries_a_request_id_and_logs_one_json_line(
    unit: str, headers: dict[str, str], client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    refresh(client)
    formatter = JsonFormatter()
    with caplog.at_level(logging.INFO, logger="kenbun_analytics.access"):
        ok = client.get("/analytics/campaigns", headers=headers)
        missing = client.get("/nowhere", headers=headers)
        chosen = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
        hostile = client.get("/healthz", headers={"X-Request-Id": 'a b"c' * 30})
    ids = [r.headers["x-request-id"] for r in (ok, missing, chosen, hostile)]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,64}", i) for i in ids)
    assert len(set(ids)) == 4
    assert ids[2] == "abc-123"
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name.endswith("access")]
    assert [line["request_id"] for line in lines] == ids
    assert [line["status"] for line in lines] == [200, 404, 200, 200]
    assert lines[0]["route"] == "/analytics/campaigns"
    token = headers["Authorization"].split()[1]
    assert all(token not in json.dumps(line) for line in lines)


def test_log_lines_are_json_without_tracebacks_or_credentials() -> None:
    formatter = JsonFormatter()
    error = ValueError("/home/secret/path.py failed")
    record = logging.LogRecord(
        "kenbun_analytics",
        logging.ERROR,
        __file__,
        1,
        "header was Bearer kbn_pat_abcdef and Basic dXNlcjpwYXNz",
        None,
        exc_info=(ValueError, error, error.__traceback__),
    )
    line = formatter.format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["error_type"] == "ValueError"
    assert "Traceback" not in line
    assert "kbn_pat_abcdef" not in line
    assert "dXNlcjpwYXNz" not in line
    assert redact("token kbn_sas_XYZ") == "token [redacted]"


def test_rate_limit_is_per_credential_and_ignores_forwarded_for(
    world: World, unit: str, headers: dict[str, str], database_url: str
) -> None:
    other = world.reader(unit)
    with TestClient(make_app(database_url, rate_limit_per_second=1, rate_limit_burst=3)) as client:
        refresh(client)
        statuses = [
            client.get(
                "/analytics/campaigns",
                headers={**headers, "X-Forwarded-For": f"10.0.0.{i}", "X-Real-IP": f"10.1.0.{i}"},
            ).status_code
            for i in range(5)
        ]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3:] == [429, 429]
        limited = client.get("/analytics/campaigns", headers=headers)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json() == {
            "status": 429,
            "detail": limited.json()["detail"],
        }
        assert "retry after" in limited.json()["detail"]
        # Another credential has its own budget.
        assert client.get("/analytics/campaigns", headers=other).status_code == 200


def test_rate_limiter_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 2, clock=lambda: now[0])
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimited) as raised:
        limiter.check("a")
    assert raised.value.retry_after_seconds == 1
    now[0] = 0.5
    limiter.check("a")
    limiter.check("b")
    assert not RateLimiter(0).enabled
    for _ in range(1000):
        RateLimiter(0).check("a")
