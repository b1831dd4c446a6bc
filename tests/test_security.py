"""What the public address tells nobody, and what the admin listener tells the
operator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import admin, make_app, refresh
from tests.world import World

Client = TestClient[Litestar]


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    world.event(unit, campaign="spring", lead=world.lead(unit, level="Hot"))
    return unit


@pytest.fixture
def client(database_url: str, unit: str) -> Iterator[Client]:
    with TestClient(make_app(database_url)) as client:
        yield client


# ------------------------------------------------ public and admin answers --


def test_the_public_address_tells_only_the_status(world: World, unit: str, client: Client) -> None:
    """/healthz and /readyz say no org unit id, count, size, error or address; /metrics
    is not there; the admin listener has all of it."""
    public = [client.get("/readyz"), client.get("/healthz")]
    assert public[0].json() == {
        "ready": False,
        "detail": "not ready: the first snapshot refresh has not finished",
    }
    refresh(client)
    public += [client.get("/readyz"), client.get("/healthz")]
    assert public[2].json() == {"ready": True, "detail": "ready"}
    assert public[3].json() == {"status": "ok"}
    missing = client.get("/metrics")
    assert missing.status_code == 404
    assert missing.json() == {"status": 404, "detail": "Not Found"}
    for response in public:
        assert unit not in response.text
    assert "/healthz" in client.get("/schema/openapi.json").json()["paths"]
    assert "/metrics" not in client.get("/schema/openapi.json").json()["paths"]

    details = admin(client).get("/healthz").json()
    assert [u["org_unit_id"] for u in details["org_units"]] == [unit]
    assert details["org_units"][0]["events"] == 1
    metrics = admin(client).get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert f'kenbun_snapshot_rows{{org_unit="{unit}"}} 1.0' in metrics.text
    assert admin(client).get("/readyz").json() == {"ready": True, "detail": "ready"}
    assert admin(client).get("/schema/openapi.json").status_code == 404


def test_a_failing_database_is_named_on_the_admin_listener_only(
    world: World, unit: str, database_url: str
) -> None:
    """A refresh failing against an unreachable PostgreSQL: the public /readyz says so
    without its host and port, which the admin /healthz gives."""
    unreachable = "postgresql://kenbun@127.0.0.1:9/nowhere"
    with TestClient(make_app(unreachable, migrate=False)) as client:
        assert client.app.state.refresher.refresh(wait=True) is False
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "ready": False,
            "detail": "not ready: the snapshot refresh failed and is retried "
            "(PostgreSQL unreachable or failing)",
        }
        assert client.get("/healthz").json() == {"status": "ok"}
        for response in (ready, client.get("/healthz")):
            assert "127.0.0.1" not in response.text
            assert ":9" not in response.text
        error = admin(client).get("/healthz").json()["last_refresh_error"]
        assert "127.0.0.1" in error
        assert "failed" in error
        assert "127.0.0.1" not in admin(client).get("/readyz").text
