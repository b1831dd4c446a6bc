"""Published snapshots: immutable versions of each org unit's layout in a directory
that every server of a deployment maps (``serve --snapshot-dir``).

::

    ROOT/<org unit>/v00000000000000000007/   one version: the layout's uncompressed
                                            Arrow IPC files and manifest.json
    ROOT/<org unit>/newest.json             the pointer: the newest version, and
                                            the time and change-log position it
                                            is current as of
    ROOT/<org unit>/.publishing-*           a version being written (never read)
    ROOT/org_units.json                     the org units the refresher serves: a
                                            follower is ready once each of them
                                            has a version; the directory of an
                                            org unit left out is removed after
                                            the grace period
    ROOT/.publishing-*.json                 a declaration being written

Invariants:

* A version directory is complete before its name exists: the files are
  written under a temporary name, fsynced, the directory fsynced and renamed,
  and the pointer is written last, itself through a fsynced file renamed over
  the old pointer. A reader follows only the pointer, so a publisher killed at
  any step leaves nothing that is read; what it left is removed after the
  grace period.
* A version's files never change once published. The manifest holds each
  file's size and SHA-256, and :meth:`PublishedStore.open` refuses a version
  whose files do not match it (:class:`CorruptVersion`).
* A version is removed only when it is neither of the ``keep`` newest and its
  successor was published more than ``grace_seconds`` ago, or when its org
  unit has been left out of ``org_units.json`` for ``grace_seconds``
  (:meth:`PublishedStore.sweep`). A reader maps a
  version's files within one refresh tick of reading the pointer, and a
  mapped file stays readable after it is unlinked (POSIX keeps the inode while
  a mapping holds it), so once mapped, removal cannot hurt it; the grace only
  has to outlast the step from reading the pointer to mapping the files.

The interface (:meth:`publish`, :meth:`newest`, :meth:`open`, :meth:`remove`)
is what an object store would have to offer to stand behind it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kenbun_analytics.engine.layout import Layout
from kenbun_analytics.errors import CorruptVersion
from kenbun_analytics.refresh.handover import read_layout, write_layout

FORMAT_VERSION = 1
"""Of the manifest and the files' layout; a reader refuses any other."""
POINTER = "newest.json"
DECLARED = "org_units.json"
MANIFEST = "manifest.json"
PUBLISHING = ".publishing-"
_VERSION = re.compile(r"v([0-9]{20})")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Pointer:
    """An org unit's newest version, and what it is current as of."""

    org_unit_id: str
    version: int
    taken_at: datetime
    """The data is PostgreSQL's as of this time (X-Snapshot-At)."""
    position: str
    """The change-log position (a snapshot xmin) the version is consistent with:
    an incremental refresh that takes over reads the change log from here."""
    full_at: datetime
    """When the full load this version descends from was taken."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "org_unit_id": self.org_unit_id,
            "version": self.version,
            "taken_at": self.taken_at.isoformat(),
            "position": self.position,
            "full_at": self.full_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pointer:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(data.get("format_version"))
        return cls(
            org_unit_id=str(data["org_unit_id"]),
            version=int(data["version"]),
            taken_at=datetime.fromisoformat(data["taken_at"]),
            position=str(data["position"]),
            full_at=datetime.fromisoformat(data["full_at"]),
        )


def _version_name(version: int) -> str:
    return f"v{version:020d}"


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(directory: Path, name: str, data: dict[str, Any]) -> None:
    """``data`` as ``directory/name``, atomically: a fsynced file renamed over it,
    then the directory fsynced, so a crash leaves the old file or the new."""
    with tempfile.NamedTemporaryFile(
        "w", dir=directory, prefix=PUBLISHING, suffix=".json", delete=False
    ) as file:
        try:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
            os.replace(file.name, directory / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(file.name)
            raise
    _fsync(directory)


class PublishedStore:
    """The directory of published versions. Any process may read it; only the
    elected refresher publishes and removes (:mod:`kenbun_analytics.refresh.deployment`)."""

    def __init__(
        self,
        root: Path,
        *,
        grace_seconds: float,
        keep: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self._grace_seconds = grace_seconds
        self._keep = max(2, keep)
        self._clock = clock
        self._publisher = f"{socket.gethostname()}:{os.getpid()}"

    def units(self) -> list[str]:
        """The org units with a published version."""
        if not self.root.is_dir():
            return []
        return sorted(path.parent.name for path in self.root.glob(f"*/{POINTER}"))

    def declare(self, org_unit_ids: list[str]) -> None:
        """Record the org units the refresher serves, before their first versions
        are published, so that a follower does not report ready on the first
        org unit to appear."""
        self.root.mkdir(parents=True, exist_ok=True)
        _write_json(self.root, DECLARED, {"org_unit_ids": sorted(org_unit_ids)})

    def declared(self) -> list[str] | None:
        """The org units last declared; None before any declaration, or when the
        file cannot be read."""
        try:
            data = json.loads((self.root / DECLARED).read_text())
            return sorted(str(unit) for unit in data["org_unit_ids"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def newest(self, org_unit_id: str) -> Pointer | None:
        """The org unit's pointer; None before its first publish."""
        try:
            data = json.loads((self.root / org_unit_id / POINTER).read_text())
        except FileNotFoundError:
            return None
        return Pointer.from_json(data)

    def publish(
        self,
        layout: Layout,
        *,
        org_unit_id: str,
        taken_at: datetime,
        position: str,
        full_at: datetime,
    ) -> Pointer:
        """Publish ``layout`` as the org unit's next version and point to it.

        The version number is one above any version directory present (a
        publisher killed after its rename and before its pointer left one), so
        numbers only grow, whoever publishes.
        """
        unit_dir = self.root / org_unit_id
        unit_dir.mkdir(parents=True, exist_ok=True)
        version = max([*self._versions(unit_dir), 0]) + 1
        staging = Path(tempfile.mkdtemp(prefix=PUBLISHING, dir=unit_dir))
        try:
            files = write_layout(layout, staging, whole=True)
            manifest = {
                "format_version": FORMAT_VERSION,
                "org_unit_id": org_unit_id,
                "version": version,
                "taken_at": taken_at.isoformat(),
                "position": position,
                "full_at": full_at.isoformat(),
                "publisher": self._publisher,
                "files": {
                    path.name: {"bytes": path.stat().st_size, "sha256": _digest(path)}
                    for path in files
                },
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
            for path in [*files, staging / MANIFEST]:
                _fsync(path)
            _fsync(staging)
            staging.rename(unit_dir / _version_name(version))
            _fsync(unit_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        pointer = Pointer(org_unit_id, version, taken_at, position, full_at)
        _write_json(unit_dir, POINTER, pointer.to_json())
        return pointer

    def confirm(self, pointer: Pointer, *, taken_at: datetime, position: str) -> Pointer:
        """Nothing changed in the org unit since ``pointer``: the same version is
        current as of ``taken_at`` and ``position``."""
        confirmed = Pointer(
            pointer.org_unit_id, pointer.version, taken_at, position, pointer.full_at
        )
        _write_json(self.root / pointer.org_unit_id, POINTER, confirmed.to_json())
        return confirmed

    def open(self, pointer: Pointer) -> Layout:
        """The version's layout, memory-mapped, once every file matches the
        manifest's size and checksum; :class:`CorruptVersion` otherwise."""
        directory = self.root / pointer.org_unit_id / _version_name(pointer.version)
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError) as error:
            raise CorruptVersion(
                pointer.org_unit_id, pointer.version, MANIFEST, str(error)
            ) from None
        if manifest.get("format_version") != FORMAT_VERSION:
            raise CorruptVersion(
                pointer.org_unit_id, pointer.version, MANIFEST, "an unknown format version"
            )
        for name, expected in manifest["files"].items():
            path = directory / name
            try:
                size = path.stat().st_size
                if size != expected["bytes"]:
                    raise CorruptVersion(
                        pointer.org_unit_id,
                        pointer.version,
                        name,
                        f"{size} bytes where the manifest says {expected['bytes']}",
                    )
                if _digest(path) != expected["sha256"]:
                    raise CorruptVersion(
                        pointer.org_unit_id, pointer.version, name, "its checksum does not match"
                    )
            except OSError as error:
                raise CorruptVersion(
                    pointer.org_unit_id, pointer.version, name, error.strerror or str(error)
                ) from None
        try:
            return read_layout(directory, mapped=True)
        except (OSError, ValueError) as error:
            raise CorruptVersion(pointer.org_unit_id, pointer.version, "*", str(error)) from None

    def remove(self, org_unit_id: str) -> list[int]:
        """Remove the org unit's superseded versions that no reader can still be
        about to map, and abandoned publishes; the versions removed."""
        unit_dir = self.root / org_unit_id
        now = self._clock()
        versions = sorted(self._versions(unit_dir))
        pointer = self.newest(org_unit_id)
        newest = pointer.version if pointer is not None else None
        removed = []
        # A version goes once its successor has stood for the grace period.
        superseded = versions[: -self._keep]
        for version, successor in itertools.pairwise(versions):
            if version not in superseded or version == newest:
                continue
            if now - self._mtime(unit_dir / _version_name(successor)) > self._grace_seconds:
                shutil.rmtree(unit_dir / _version_name(version), ignore_errors=True)
                removed.append(version)
        for path in unit_dir.glob(f"{PUBLISHING}*"):
            if now - self._mtime(path) > self._grace_seconds:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        return removed

    def sweep(self, org_unit_ids: Collection[str]) -> list[str]:
        """Remove the directories of org units that are not in ``org_unit_ids``
        (deleted in PostgreSQL), and declarations abandoned in the root, once
        neither they nor the declaration have changed for the grace period; the
        org units removed.

        The declaration that leaves an org unit out is written before the sweep,
        so its directory outlives that declaration by the grace period: every
        follower lets go of the org unit at its next tick, and the mapping it held
        stays readable after the unlink. An empty list sweeps nothing (a listing
        of an empty or wrong database must not wipe the directory), and only
        directories that hold a pointer or a version are touched, so anything
        else on the volume is left alone.
        """
        if not self.root.is_dir() or not org_unit_ids:
            return []
        now = self._clock()
        if now - self._mtime(self.root / DECLARED) <= self._grace_seconds:
            return []
        kept = set(org_unit_ids)
        removed = []
        for path in sorted(self.root.iterdir()):
            try:
                if now - self._mtime(path) <= self._grace_seconds:
                    continue
                if path.name.startswith(PUBLISHING) and path.is_file():
                    path.unlink(missing_ok=True)
                elif path.name not in kept and ((path / POINTER).is_file() or self._versions(path)):
                    shutil.rmtree(path, ignore_errors=True)
                    if not path.exists():
                        removed.append(path.name)
            except OSError:
                continue  # not ours to read (a volume's lost+found): left alone
        return removed

    def bytes_held(self) -> int:
        """Bytes of every file in the store, versions in flight included."""
        return sum(path.stat().st_size for path in self._files() if path.is_file())

    def _files(self) -> Iterator[Path]:
        if self.root.is_dir():
            with contextlib.suppress(FileNotFoundError):
                yield from self.root.rglob("*")

    @staticmethod
    def _versions(unit_dir: Path) -> list[int]:
        if not unit_dir.is_dir():
            return []
        return [
            int(match.group(1))
            for path in unit_dir.iterdir()
            if (match := _VERSION.fullmatch(path.name))
        ]

    @staticmethod
    def _mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except FileNotFoundError:
            return float("inf")
