"""The limiter interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Limit:
    """`rate` requests per second on average, with bursts of up to `burst` at once."""

    rate: float
    burst: int


def paced(rate: float) -> Limit:
    """A budget of `rate` per second with a small burst (a tenth of a second's worth).

    GCRA lets `burst` requests through at once and then `rate` per second, so any one-second
    window sees at most `rate + burst`; keeping the burst small keeps every window close to
    the budget (a burst equal to the rate would allow twice the budget in one second).
    """
    return Limit(rate, max(1, int(rate / 10)))


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
