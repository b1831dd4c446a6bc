"""Fixtures: one real PostgreSQL per test session, a fresh migrated database per test.

The server is the embedded one unless ``KENBUN_TEST_DATABASE_URL`` names a
PostgreSQL to use instead (its user must be allowed to create databases).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.local.embedded import EmbeddedPostgres
from kenbun_analytics.settings import Settings
from kenbun_analytics.source.postgres import Source
from kenbun_analytics.web.app import create_app
from support.world import World

TEMPLATE = "kenbun_test_template"

settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile("deep", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


TIERS = ("unit", "integration", "system")
BROWSER_MODULES = ("test_page.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier (its folder under tests/) and the page's tests with
    ``browser``; without Chromium the browser tier is skipped and says how to get it."""
    del config
    chromium = shutil.which("chromium")
    for item in items:
        folder = item.path.parent.name
        if folder in TIERS:
            item.add_marker(getattr(pytest.mark, folder))
        if item.path.name in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
            if chromium is None:
                item.add_marker(
                    pytest.mark.skip(
                        reason="Chromium is missing: apt-get install chromium (as root), "
                        'or run pytest -m "not browser"'
                    )
                )


def _with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server with a migrated template database."""
    external = os.environ.get("KENBUN_TEST_DATABASE_URL")
    server = None
    if external:
        url = external
    else:
        server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "data", fast=True)
        url = server.start()
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            admin.execute(f"CREATE DATABASE {TEMPLATE}")
        source = Source(_with_database(url, TEMPLATE))
        source.migrate()
        source.close()
        yield url
    finally:
        if server is not None:
            server.stop()


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database with the kenbun schema and our migrations, dropped afterwards."""
    name = "kenbun_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    with World.connect(database_url) as built:
        yield built


@pytest.fixture
def source(database_url: str) -> Iterator[Source]:
    opened = Source(database_url)
    try:
        yield opened
    finally:
        opened.close()


def make_app(database_url: str, **overrides: object) -> Litestar:
    settings = Settings(database_url=database_url, refresh_seconds=3600, **overrides)  # type: ignore[arg-type]
    return create_app(settings, run_scheduler=False)


@pytest.fixture
def app(database_url: str) -> Litestar:
    return make_app(database_url)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


def admin(client: TestClient[Litestar]) -> TestClient[Litestar]:
    """A client of the app's admin listener (detailed /healthz, /metrics, /readyz),
    which ``serve`` runs on ``--admin-host``/``--admin-port``."""
    return TestClient(client.app.state.admin)


def refresh(client: TestClient[Litestar]) -> None:
    """Bring the app's snapshots up to date now, and fail loudly if that fails."""
    refresher = client.app.state.refresher
    assert refresher.refresh(wait=True), refresher.status.errors


logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass
class LiveServer:
    """The app behind a real uvicorn on a loopback port, in a thread of this process."""

    app: Litestar
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def live_server(app: Litestar) -> Iterator[LiveServer]:
    import uvicorn

    from kenbun_analytics.local.embedded import free_port
    from kenbun_analytics.web.serving import uvicorn_options

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **uvicorn_options())  # as `serve`
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield LiveServer(app, port)
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def live(unit: str, database_url: str) -> Iterator[LiveServer]:
    """A live server whose snapshots hold ``unit`` (the test module's own fixture)."""
    with live_server(make_app(database_url)) as server:
        assert server.app.state.refresher.refresh(wait=True)
        yield server
