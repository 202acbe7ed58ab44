"""The limiter interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Limit:
    """`rate` requests per second on average, with bursts of up to `burst` at once."""

    rate: float
    burst: int


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
