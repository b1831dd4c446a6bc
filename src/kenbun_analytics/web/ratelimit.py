"""Per-credential rate limiting: a token bucket per credential id.

The key is the authenticated credential, never an address, so neither a
spoofed ``X-Forwarded-For`` nor a new connection resets a client's budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from kenbun_analytics.errors import RateLimited


class RateLimiter:
    """``rate`` requests per second on average, ``burst`` at once; ``rate`` 0 is off."""

    def __init__(
        self, rate: float, burst: int = 0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst or max(1, math.ceil(2 * rate)))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def check(self, key: str) -> None:
        """Spend one request of ``key``'s budget, or raise :class:`RateLimited`."""
        wait = self._spend(key)
        if wait:
            raise RateLimited(wait)

    def allow(self, key: str) -> bool:
        """Spend one request of ``key``'s budget if there is one; False otherwise."""
        return not self._spend(key)

    def _spend(self, key: str) -> int:
        """0 after spending one request; else the whole seconds until one is left."""
        if self._rate <= 0:
            return 0
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return max(1, math.ceil((1 - tokens) / self._rate))
            self._buckets[key] = (tokens - 1, now)
            return 0
