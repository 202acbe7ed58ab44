"""The limiter interface."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

# Seconds of timing jitter allowed for on each side of a one-second window: between the
# limiter's decision and the provider's clock a send may be delayed (event loop, network), so
# a budget is kept over a slightly longer window than the provider counts.
JITTER_GUARD = 0.015


@dataclass(frozen=True)
class Limit:
    """`rate` requests per second on average, with bursts of up to `burst` at once."""

    rate: float
    burst: int


def paced(rate: float) -> Limit:
    """A budget of `rate` per second, spent evenly (no burst).

    GCRA lets `burst` requests through at once and then one per `1/rate` seconds, so a window
    of length L sees at most `burst + floor(L * rate)`; with burst 1 every half-open second
    sees at most `rate`. Send buckets are spent through `within_budget`, which also leaves
    room for timing jitter.
    """
    return Limit(rate, 1)


@lru_cache(maxsize=1024)
def within_budget(limit: Limit, guard: float = JITTER_GUARD) -> Limit:
    """The GCRA limit that never passes more than `limit`'s per-second budget in any sliding second.

    The budget of a limit of `rate` >= 1 per second is `floor(rate)` in any one second (the
    first included). GCRA with burst b and rate r passes at most `b + floor(L * r)` in any
    window of length L, so with L = 1 s plus `guard` on each side, r = (budget - b + 1) / L
    keeps every window within the budget even when sends drift by up to `guard` seconds.
    The burst is kept (capped at the budget); a larger burst costs sustained rate. Limits
    slower than one per second (per-minute budgets) are returned unchanged.
    """
    if limit.rate < 1 or not math.isfinite(limit.rate):
        return limit
    budget = math.floor(limit.rate + 1e-9)
    burst = max(1, min(limit.burst, budget))
    window = 1.0 + 2 * guard
    return Limit((budget - burst + 1) / window * (1 - 1e-9), burst)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until one request would be allowed; 0 when allowed
    remaining: int


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        """Spend `cost` tokens of bucket `key` if it has them."""

    async def aclose(self) -> None:
        """Release connections."""
