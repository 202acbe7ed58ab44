"""Pauses of single rate-limit buckets, asked for by a provider (429 retry_after, FloodWait).

Only the bucket concerned waits: a 429 for one Telegram chat pauses that chat, not the bot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis


class BucketPauses(Protocol):
    async def pause(self, key: str, seconds: float) -> None: ...

    async def remaining(self, key: str) -> float:
        """Seconds until the bucket may be used again (0 when not paused)."""


class MemoryBucketPauses:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._max_keys = max_keys

    async def pause(self, key: str, seconds: float) -> None:
        now = self._clock()
        self._until[key] = max(self._until.get(key, 0.0), now + seconds)
        if len(self._until) > self._max_keys:
            self._until = {k: v for k, v in self._until.items() if v > now}

    async def remaining(self, key: str) -> float:
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            self._until.pop(key, None)
            return 0.0
        return left


class RedisBucketPauses:
    """Shared by every worker process: a key with a TTL per paused bucket."""

    def __init__(self, redis: Redis, prefix: str = "cg:pause:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def pause(self, key: str, seconds: float) -> None:
        millis = max(1, int(seconds * 1000))
        name = self._prefix + key
        current = await self._redis.pttl(name)
        if current is None or current < millis:
            await self._redis.set(name, b"1", px=millis)

    async def remaining(self, key: str) -> float:
        left = await self._redis.pttl(self._prefix + key)
        return max(0.0, left / 1000) if left and left > 0 else 0.0
