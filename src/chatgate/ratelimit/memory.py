"""In-process GCRA limiter (embedded mode, single process)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from chatgate.ratelimit.base import Decision, Limit

# Tolerance for floating-point error when comparing times (seconds).
_EPSILON = 1e-9


def check_request(limit: Limit, cost: int) -> None:
    """Reject limits and costs that can never be satisfied."""
    if not (limit.rate > 0 and math.isfinite(limit.rate)):
        raise ValueError("rate must be a positive finite number")
    if limit.burst < 1:
        raise ValueError("burst must be at least 1")
    if cost < 0:
        raise ValueError("cost must not be negative")
    if cost > limit.burst:
        raise ValueError("cost exceeds burst")


class MemoryRateLimiter:
    """GCRA ("generic cell rate algorithm") token buckets kept in a bounded dict.

    Per key only the theoretical arrival time (TAT) is stored: the moment at which the
    bucket would be full again. A request of `cost` tokens moves TAT forward by
    `cost / rate` seconds and is allowed when the new TAT is at most `burst / rate`
    seconds in the future. Keys whose TAT has passed hold a full bucket, i.e. the same
    as no entry, and are dropped; when more than `max_keys` are live the least recently
    used ones are evicted (that forgets their debt: bounded memory wins over precision).

    Not thread-safe; fine within one event loop as `hit` never awaits.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._clock = clock
        self._max_keys = max_keys
        self._tat: OrderedDict[str, float] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._tat)

    async def hit(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        check_request(limit, cost)
        now = self._clock()
        interval = 1.0 / limit.rate
        tolerance = interval * limit.burst  # how far TAT may run ahead of now

        tat = self._tat.pop(key, now)
        ahead = max(tat - now, 0.0)  # seconds of debt already in the bucket
        new_ahead = ahead + interval * cost

        if new_ahead > tolerance + _EPSILON:
            if ahead > 0:
                self._tat[key] = tat  # keep the state, now most recently used
            remaining = max(math.floor((tolerance - ahead + _EPSILON) / interval), 0)
            return Decision(allowed=False, retry_after=new_ahead - tolerance, remaining=remaining)

        if new_ahead > 0:
            self._tat[key] = now + new_ahead
        self._evict(now)
        remaining = max(math.floor((tolerance - new_ahead + _EPSILON) / interval), 0)
        return Decision(allowed=True, retry_after=0.0, remaining=remaining)

    def _evict(self, now: float) -> None:
        entries = self._tat
        # amortised O(1): drop full buckets from the old end, then the least recently used
        while entries:
            key, tat = next(iter(entries.items()))
            if tat > now and len(entries) <= self._max_keys:
                break
            del entries[key]

    async def aclose(self) -> None:
        self._tat.clear()
