"""The result cache stays within its byte bound, gzip forms included."""

from __future__ import annotations

import gzip

from kenbun_analytics.web.cache import GZIP_MIN_BYTES, ResultCache


def test_many_distinct_entries_stay_within_the_bound() -> None:
    cache = ResultCache(max_bytes=100_000)
    for n in range(1_000):
        key = ("campaigns", "unit", 1, "campaign", n)
        entry = cache.put(key, (f"{n:05d}" * 400).encode())  # 2,000 bytes each
        if n % 3 == 0:
            assert cache.gzipped(key, entry) is not None
        assert cache.size_bytes <= 100_000
        assert cache.size_bytes == sum(e.size for e in cache._entries.values())
    assert 40 <= len(cache) <= 50
    assert cache.get(("campaigns", "unit", 1, "campaign", 999)) is not None
    assert cache.get(("campaigns", "unit", 1, "campaign", 0)) is None  # evicted, oldest first


def test_a_body_larger_than_the_bound_is_answered_but_not_kept() -> None:
    cache = ResultCache(max_bytes=1_000)
    entry = cache.put(("k",), b"x" * 5_000)
    assert entry.body == b"x" * 5_000
    assert len(cache) == 0
    assert cache.size_bytes == 0


def test_gzip_form_is_deterministic_and_small_bodies_stay_plain() -> None:
    cache = ResultCache(max_bytes=1_000_000)
    body = b'{"campaigns": []}' * 200
    entry = cache.put(("a",), body)
    packed = cache.gzipped(("a",), entry)
    assert packed == gzip.compress(body, compresslevel=6, mtime=0)
    assert cache.gzipped(("a",), entry) is packed  # compressed once
    assert entry.gzip_etag == entry.etag[:-1] + '-gzip"'
    small = cache.put(("b",), b"x" * (GZIP_MIN_BYTES - 1))
    assert cache.gzipped(("b",), small) is None
    assert cache.size_bytes == len(body) + len(packed) + GZIP_MIN_BYTES - 1
