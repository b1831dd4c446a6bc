"""A byte-bounded LRU of encoded responses, keyed by org unit, snapshot and parameters.

A key names the snapshot version, so a refreshed snapshot can never be
answered from an older entry; old entries simply age out. An entry keeps its
gzip form too, made the first time a client accepts it, so a repeated request
costs no compression and a fraction of the bytes on the wire.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

GZIP_MIN_BYTES = 1024


@dataclass(slots=True)
class CachedResponse:
    body: bytes
    etag: str
    gzipped: bytes | None = None
    """The gzip form of ``body`` (deterministic: no timestamp), once asked for."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers that belong to the body (a drilldown's X-Total-Count)."""

    @property
    def gzip_etag(self) -> str:
        """The gzip representation's own strong validator."""
        return self.etag[:-1] + '-gzip"'

    @property
    def gzip_pending(self) -> bool:
        """Whether the body is worth compressing and not yet compressed."""
        return self.gzipped is None and len(self.body) >= GZIP_MIN_BYTES

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


class ResultCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[object, ...], CachedResponse] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[object, ...], *, count: bool = True) -> CachedResponse | None:
        """The entry of ``key``, or None; ``count=False`` leaves the hit and miss
        counts to the caller (:meth:`count_hit`)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += count
                return None
            self._entries.move_to_end(key)
            self.hits += count
            return entry

    def count_hit(self) -> None:
        with self._lock:
            self.hits += 1

    def gzipped(self, key: tuple[object, ...], entry: CachedResponse) -> bytes | None:
        """The gzip form of an entry's body; None when the body is too small to gain."""
        if entry.gzip_pending:
            compressed = gzip.compress(entry.body, compresslevel=6, mtime=0)
            with self._lock:
                if entry.gzipped is None:
                    entry.gzipped = compressed
                    if self._entries.get(key) is entry:
                        self._bytes += len(compressed)
                        self._evict()
        return entry.gzipped

    def _evict(self) -> None:
        while self._bytes > self._max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size

    def put(
        self, key: tuple[object, ...], body: bytes, headers: tuple[tuple[str, str], ...] = ()
    ) -> CachedResponse:
        entry = CachedResponse(body, strong_etag(body), headers=headers)
        if len(body) > self._max_bytes:
            return entry
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= previous.size
            self._entries[key] = entry
            self._bytes += len(body)
            self._evict()
        return entry
