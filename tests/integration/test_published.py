"""The snapshot directory: versions published whole or not at all, mapped rather
than copied, refused when their files do not match the manifest, removed only
when superseded for the grace period."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.errors import CorruptVersion
from kenbun_analytics.local.seed import seed_world
from kenbun_analytics.refresh import published as published_module
from kenbun_analytics.refresh.full import load_unit
from kenbun_analytics.refresh.handover import read_layout, write_layout
from kenbun_analytics.refresh.published import POINTER, PublishedStore
from kenbun_analytics.source.lock import LOCK_KEY
from kenbun_analytics.source.postgres import Source
from kenbun_analytics.store import Snapshot
from kenbun_analytics.web.answers import campaigns_body
from support.world import World
from tests.conftest import admin, make_app

T0 = datetime(2026, 6, 30, 12, tzinfo=UTC)


@pytest.fixture
def seeded(source: Source) -> tuple[str, Layout]:
    """An org unit of a small seeded world, and its layout as a full load builds it."""
    units = seed_world(source, events=3000, seed=1, anchor=date(2026, 6, 30)).org_unit_ids
    with ThreadPoolExecutor(2) as readers:
        return units[0], load_unit(source, units[0], 1, readers)


def publish(store: PublishedStore, unit: str, layout: Layout, at: datetime = T0) -> int:
    pointer = store.publish(layout, org_unit_id=unit, taken_at=at, position="100", full_at=at)
    return pointer.version


def body(unit: str, layout: Layout) -> bytes:
    return campaigns_body(Snapshot(unit, T0, 1, layout), "source", None, None)


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            low, high = line.split()[0].split("-")
            ranges.append((int(low, 16), int(high, 16)))
    return ranges


def test_a_published_version_maps_back_to_the_same_answers_without_copying(
    seeded: tuple[str, Layout], tmp_path: Path
) -> None:
    """A version opened from the directory answers byte for byte as the layout
    it was published from, and its columns point into the mapped files."""
    unit, layout = seeded
    store = PublishedStore(tmp_path, grace_seconds=60)
    version = publish(store, unit, layout)
    pointer = store.newest(unit)
    assert pointer is not None
    assert pointer.version == version == 1
    mapped = store.open(pointer)
    assert body(unit, mapped) == body(unit, layout)
    events_file = tmp_path / unit / "v00000000000000000001" / "events.arrow"
    ranges = mapped_ranges(events_file)
    assert ranges, "events.arrow is not mapped"
    for column in mapped.events.iter_columns():
        assert column.n_chunks() == 1
        address = column.to_arrow().buffers()[1].address
        assert any(low <= address < high for low, high in ranges), column.name


def test_the_pointer_is_written_last(
    seeded: tuple[str, Layout], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish that dies before its pointer leaves the previous version the
    newest; the next publish takes a number above the orphan's."""
    unit, layout = seeded
    store = PublishedStore(tmp_path, grace_seconds=60)
    publish(store, unit, layout)

    def dies(*_: Any) -> None:
        raise OSError(errno.EIO, "killed")

    with monkeypatch.context() as patched:
        patched.setattr(published_module, "_write_json", dies)
        with pytest.raises(OSError, match="killed"):
            publish(store, unit, layout)
    pointer = store.newest(unit)
    assert pointer is not None
    assert pointer.version == 1
    assert (tmp_path / unit / "v00000000000000000002").is_dir()
    assert publish(store, unit, layout) == 3


def test_a_failed_write_leaves_no_version_behind(
    seeded: tuple[str, Layout], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills in the middle of a publish: the partial files are gone,
    the newest version is the previous one, whole."""
    unit, layout = seeded
    store = PublishedStore(tmp_path, grace_seconds=60)
    publish(store, unit, layout)

    def full_disk(layout: Layout, directory: Path, *, whole: bool = False) -> list[Path]:
        (directory / "events.arrow").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(published_module, "write_layout", full_disk)
    with pytest.raises(OSError, match="No space"):
        publish(store, unit, layout)
    assert sorted(path.name for path in (tmp_path / unit).iterdir()) == [
        POINTER,
        "v00000000000000000001",
    ]
    pointer = store.newest(unit)
    assert pointer is not None
    assert body(unit, store.open(pointer)) == body(unit, layout)


def _publish_forever(root: str, unit: str, handed: str) -> None:
    """In a child: publish the handed layout again and again, until killed."""
    store = PublishedStore(Path(root), grace_seconds=3600)
    layout = read_layout(Path(handed))
    while True:
        store.publish(layout, org_unit_id=unit, taken_at=T0, position="1", full_at=T0)


def test_a_publisher_killed_at_any_moment_leaves_nothing_that_is_read(
    seeded: tuple[str, Layout], tmp_path: Path
) -> None:
    """SIGKILL a process in the middle of publishing, many times: every time, the
    pointer names a whole version that opens and answers as the layout."""
    unit, layout = seeded
    handed = tmp_path / "handed"
    handed.mkdir()
    write_layout(layout, handed)
    root = tmp_path / "store"
    store = PublishedStore(root, grace_seconds=3600)
    expected = body(unit, layout)
    context = multiprocessing.get_context("spawn")
    published = 0
    for delay in (0.0, 0.002, 0.005, 0.011, 0.017, 0.03, 0.05):
        child = context.Process(target=_publish_forever, args=(str(root), unit, str(handed)))
        child.start()
        deadline = time.monotonic() + 60
        # Killed only once it is publishing: at a different step of a publish each time.
        while (pointer := store.newest(unit)) is None or pointer.version <= published:
            assert time.monotonic() < deadline, "the child never published"
            time.sleep(0.001)
        time.sleep(delay)
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        pointer = store.newest(unit)
        assert pointer is not None
        assert body(unit, store.open(pointer)) == expected
        published = pointer.version
    assert publish(store, unit, layout) > published


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing"])
def test_a_version_whose_files_do_not_match_the_manifest_is_refused(
    seeded: tuple[str, Layout], tmp_path: Path, damage: str
) -> None:
    """A changed, truncated or missing file: the open is refused, naming the file."""
    unit, layout = seeded
    store = PublishedStore(tmp_path, grace_seconds=60)
    publish(store, unit, layout)
    events = tmp_path / unit / "v00000000000000000001" / "events.arrow"
    data = bytearray(events.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF
        events.write_bytes(bytes(data))
    elif damage == "truncated":
        events.write_bytes(bytes(data[: len(data) // 2]))
    else:
        events.unlink()
    pointer = store.newest(unit)
    assert pointer is not None
    with pytest.raises(CorruptVersion, match=r"version 1 .* refused: events\.arrow"):
        store.open(pointer)


def test_superseded_versions_go_after_the_grace_period_keeping_the_last_two(
    seeded: tuple[str, Layout], tmp_path: Path
) -> None:
    """Of five versions, the last two always stay; older ones go once their
    successor has stood for the grace period; abandoned publishes go too."""
    unit, layout = seeded
    now = [time.time()]
    store = PublishedStore(tmp_path, grace_seconds=60, clock=lambda: now[0])
    for _ in range(5):
        publish(store, unit, layout)
    abandoned = tmp_path / unit / ".publishing-abandoned"
    abandoned.mkdir()
    assert store.remove(unit) == []
    now[0] += 61
    assert store.remove(unit) == [1, 2, 3]
    assert not abandoned.exists()
    assert sorted(path.name for path in (tmp_path / unit).iterdir()) == [
        POINTER,
        "v00000000000000000004",
        "v00000000000000000005",
    ]


def test_org_units_left_out_of_the_declaration_go_after_the_grace_period(
    seeded: tuple[str, Layout], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed declaration leaves no temporary file; a deleted org unit's
    directory and a killed writer's temporary file go once the declaration that
    left the org unit out has stood for the grace period; the declared org
    units, and anything on the volume that is not a snapshot, stay."""
    unit, layout = seeded
    deleted = str(uuid.uuid4())
    now = [time.time()]
    store = PublishedStore(tmp_path, grace_seconds=60, clock=lambda: now[0])
    publish(store, unit, layout)
    publish(store, deleted, layout)
    (tmp_path / "lost+found").mkdir()

    def full_disk(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", full_disk)
        with pytest.raises(OSError, match="No space"):
            store.declare([unit])
    assert not list(tmp_path.glob(".publishing-*")), "a failed declaration left its file"
    stray = tmp_path / ".publishing-abandoned.json"  # as a publisher killed mid-write leaves
    stray.write_text("{}")
    store.declare([unit])
    now[0] = time.time()
    long_ago = now[0] - 61
    for path in [tmp_path / deleted, stray]:  # last written before the grace period
        os.utime(path, (long_ago, long_ago))
    assert store.sweep([unit]) == [], "swept before the declaration stood for the grace"
    os.utime(tmp_path / "org_units.json", (long_ago, long_ago))
    assert store.sweep([]) == [], "an empty listing swept the directory"
    assert store.sweep([unit]) == [deleted]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["lost+found", "org_units.json", unit]
    )
    assert store.newest(unit) is not None


@pytest.fixture
def unit(world: World) -> str:
    unit = world.org_unit("Acme")
    world.event(unit, campaign="spring", source="google")
    return unit


@pytest.fixture
def store_client(database_url: str, tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    app = make_app(database_url, snapshot_dir=str(tmp_path / "store"))
    with TestClient(app) as client:
        yield client


def tick(client: TestClient[Litestar]) -> None:
    deployment = client.app.state.deployment
    deployment.tick()
    # The refresh a tick runs is due once the refresher's backoff has passed.
    client.app.state.refresher._next_attempt = float("-inf")


def test_an_unwritable_directory_keeps_the_last_good_version_and_backs_off(
    store_client: TestClient[Litestar],
    world: World,
    unit: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A disk full under the refresher: the version published before is served
    and stays the newest, /healthz says why, and the retries back off."""
    store_dir = tmp_path / "store"
    tick(store_client)
    health = admin(store_client).get("/healthz").json()
    assert health["store"]["role"] == "refresher"
    assert health["org_units"][0]["version"] == 1
    served = sorted(each["org_unit_id"] for each in health["org_units"])
    assert (
        PublishedStore(store_dir, grace_seconds=60).declared() == served
    )  # followers wait for these
    world.event(unit, campaign="summer", source="google")

    def full_disk(*_: Any, **__: Any) -> list[Path]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(published_module, "write_layout", full_disk)
    tick(store_client)
    tick(store_client)
    refresher = store_client.app.state.refresher
    assert refresher.status.consecutive_failures == 2
    assert refresher.retry_delay(2) > refresher.retry_delay(1)
    health = admin(store_client).get("/healthz").json()
    assert health["store"]["last_error"] == "No space left on device"
    metrics = admin(store_client).get("/metrics").text
    assert 'kenbun_store_role{role="refresher"} 1.0' in metrics
    assert 'kenbun_store_role{role="follower"} 0.0' in metrics
    assert f'kenbun_snapshot_version{{org_unit="{unit}"}} 1.0' in metrics
    assert "kenbun_store_error 1.0" in metrics
    assert health["org_units"][0]["version"] == 1
    assert "No space left" in health["org_units"][0]["last_error"]
    pointer = json.loads((store_dir / unit / POINTER).read_text())
    assert pointer["version"] == 1

    monkeypatch.undo()
    tick(store_client)
    health = admin(store_client).get("/healthz").json()
    assert health["store"]["last_error"] is None
    assert health["org_units"][0]["version"] == 2


def test_a_takeover_resumes_from_the_declared_org_units_only(
    store_client: TestClient[Litestar], world: World, unit: str, tmp_path: Path
) -> None:
    """The directory of an org unit deleted in PostgreSQL outlives it for the grace
    period; its old position and full load must not send the process that takes
    over back to a full reload."""
    tick(store_client)
    store = PublishedStore(tmp_path / "store", grace_seconds=3600)
    assert store.declared() == [unit]
    layout = store_client.app.state.operations.store.get(unit).layout
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    store.publish(
        layout, org_unit_id=str(uuid.uuid4()), taken_at=long_ago, position="1", full_at=long_ago
    )
    world.event(unit, campaign="summer", source="google")
    deployment = store_client.app.state.deployment
    deployment.status.role = "follower"  # as a follower that wins the lock
    tick(store_client)
    assert deployment.status.role == "refresher"
    refresher = store_client.app.state.refresher
    assert refresher.status.last_kind == "incremental"
    assert store_client.app.state.operations.store.get(unit).version == 2


def test_a_follower_is_ready_once_every_declared_org_unit_has_a_version(
    database_url: str, source: Source, tmp_path: Path
) -> None:
    """The refresher declares its org units before it loads them: a follower that
    sees the first one published is not ready until the others are too, and lets
    go of one the refresher no longer declares."""
    units = seed_world(source, events=3000, seed=1, anchor=date(2026, 6, 30)).org_unit_ids
    assert len(units) >= 2
    store = PublishedStore(tmp_path / "store", grace_seconds=3600)
    with ThreadPoolExecutor(2) as readers:
        layouts = {unit: load_unit(source, unit, 1, readers) for unit in units}
    publish(store, units[0], layouts[units[0]])
    with psycopg.connect(database_url, autocommit=True) as refresher:
        refresher.execute(f"SELECT pg_advisory_lock({LOCK_KEY})")  # another process refreshes
        app = make_app(database_url, snapshot_dir=str(store.root))
        with TestClient(app) as client:
            # No declaration to read (an older refresher): ready on what is
            # published, but not for good.
            tick(client)
            assert client.get("/readyz").status_code == 200
            store.declare(units)
            assert store.declared() == sorted(units)
            tick(client)
            assert admin(client).get("/healthz").json()["store"]["role"] == "follower"
            waiting = client.get("/readyz")
            assert waiting.status_code == 503
            assert waiting.json()["detail"] == f"not ready: {len(units) - 1} org units loading"
            for unit in units[1:]:
                publish(store, unit, layouts[unit])
            tick(client)
            assert client.get("/readyz").status_code == 200
            health = admin(client).get("/healthz").json()
            assert sorted(each["org_unit_id"] for each in health["org_units"]) == sorted(units)

            store.declare(units[:-1])  # the last org unit was deleted in PostgreSQL
            tick(client)
            health = admin(client).get("/healthz").json()
            assert sorted(each["org_unit_id"] for each in health["org_units"]) == sorted(units[:-1])
            assert client.app.state.operations.store.find(units[-1]) is None  # let go
            assert client.get("/readyz").status_code == 200

            # An org unit created later loads while the ready follower stays in rotation.
            created = str(uuid.uuid4())
            store.declare([*units[:-1], created])
            tick(client)
            assert client.get("/readyz").json() == {"ready": True, "detail": "ready"}
            health = admin(client).get("/healthz").json()
            (loading,) = [each for each in health["org_units"] if each["org_unit_id"] == created]
            assert loading["version"] is None
            # Its first version published but refused here: this follower alone cannot
            # serve it, so it leaves the rotation until it can.
            version = publish(store, created, layouts[units[-1]])
            events = store.root / created / f"v{version:020d}" / "events.arrow"
            events.write_bytes(events.read_bytes()[:-1])
            tick(client)
            assert client.get("/readyz").json()["detail"] == "not ready: 1 org units loading"
            publish(store, created, layouts[units[-1]])
            tick(client)
            assert client.app.state.operations.store.find(created) is not None
            assert client.get("/readyz").status_code == 200
