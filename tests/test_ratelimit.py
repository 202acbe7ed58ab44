"""GCRA limiters: the same behaviour in memory (fake clock) and in a real Redis (real time)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from chatgate.ratelimit.base import Limit, RateLimiter
from chatgate.ratelimit.memory import MemoryRateLimiter
from chatgate.ratelimit.redis import RedisRateLimiter
from tests.servers import RedisServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    kind: str
    limiter: RateLimiter
    advance: Callable[[float], Awaitable[None]]  # let time pass (fake or real)
    clock: Callable[[], float]  # the limiter's notion of "now", for elapsed-time bounds

    @property
    def exact(self) -> bool:
        """True when time stands still between calls (fake clock)."""
        return self.kind == "memory"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> tuple[str, RedisServer | None]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flushall()
        return "redis", server
    return "memory", None


@pytest.fixture
async def harness(backend: tuple[str, RedisServer | None]) -> AsyncIterator[Harness]:
    kind, server = backend
    if server is None:
        clock = FakeClock()
        memory = MemoryRateLimiter(clock=clock)
        yield Harness(kind, memory, clock.advance, clock)
        await memory.aclose()
    else:
        limiter = RedisRateLimiter.from_url(server.url)
        yield Harness(kind, limiter, asyncio.sleep, time.monotonic)
        await limiter.aclose()


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


# ------------------------------------------------------------------ shared behaviour


async def test_burst_then_denied_with_retry_after(harness: Harness) -> None:
    # rate 2/s: a slow machine has 0.5 s between hits before a token comes back
    limit = Limit(rate=2, burst=5)
    k = key()
    start = harness.clock()
    for expected_remaining in (4, 3, 2, 1, 0):
        decision = await harness.limiter.hit(k, limit)
        assert decision.allowed
        assert decision.retry_after == 0
        assert decision.remaining == expected_remaining
    denied = await harness.limiter.hit(k, limit)
    elapsed = harness.clock() - start
    assert not denied.allowed
    assert denied.remaining == 0
    # one token comes back 1/rate = 0.5 s after the burst was spent
    assert 0 < denied.retry_after <= 0.5 + 1e-6
    assert denied.retry_after >= 0.5 - elapsed - 1e-6
    if harness.exact:
        assert denied.retry_after == pytest.approx(0.5)
    # a denied request costs nothing: asking again gives (at most) the same wait
    again = await harness.limiter.hit(k, limit)
    assert not again.allowed
    assert 0 < again.retry_after <= denied.retry_after + 1e-6


async def test_cost_counts_tokens(harness: Harness) -> None:
    limit = Limit(rate=2, burst=5)
    k = key()
    first = await harness.limiter.hit(k, limit, cost=3)
    assert (first.allowed, first.remaining) == (True, 2)
    too_big = await harness.limiter.hit(k, limit, cost=3)
    assert not too_big.allowed
    assert too_big.remaining == 2
    # 6 tokens asked of 5: one more must come back, 1/rate = 0.5 s
    assert 0 < too_big.retry_after <= 0.5 + 1e-6
    if harness.exact:
        assert too_big.retry_after == pytest.approx(0.5)
    fits = await harness.limiter.hit(k, limit, cost=2)
    assert (fits.allowed, fits.remaining) == (True, 0)


async def test_refill_over_time(harness: Harness) -> None:
    limit = Limit(rate=50, burst=2)  # one token per 20 ms
    k = key()
    assert (await harness.limiter.hit(k, limit)).allowed
    assert (await harness.limiter.hit(k, limit)).allowed
    denied = await harness.limiter.hit(k, limit)
    assert not denied.allowed
    assert 0 < denied.retry_after <= 0.02 + 1e-6

    if harness.exact:
        # just before the promised moment: still denied; at it: allowed
        await harness.advance(denied.retry_after - 0.001)
        assert not (await harness.limiter.hit(k, limit)).allowed
        await harness.advance(0.001)
        allowed = await harness.limiter.hit(k, limit)
        assert allowed.allowed
        assert allowed.remaining == 0
    else:
        await harness.advance(denied.retry_after + 0.005)
        assert (await harness.limiter.hit(k, limit)).allowed

    # after burst/rate seconds the bucket is full again
    await harness.advance(2 / 50 + 0.01)
    full = await harness.limiter.hit(k, limit)
    assert full.allowed
    assert full.remaining == 1


async def test_keys_are_independent(harness: Harness) -> None:
    limit = Limit(rate=1, burst=2)
    a, b = key(), key()
    for _ in range(2):
        assert (await harness.limiter.hit(a, limit)).allowed
    assert not (await harness.limiter.hit(a, limit)).allowed
    other = await harness.limiter.hit(b, limit)
    assert other.allowed
    assert other.remaining == 1


async def test_fractional_rate(harness: Harness) -> None:
    limit = Limit(rate=0.5, burst=1)  # one request every 2 s
    k = key()
    assert (await harness.limiter.hit(k, limit)).allowed
    denied = await harness.limiter.hit(k, limit)
    assert not denied.allowed
    assert 1.9 < denied.retry_after <= 2.0 + 1e-6


async def test_invalid_requests_raise(harness: Harness) -> None:
    with pytest.raises(ValueError, match="cost exceeds burst"):
        await harness.limiter.hit(key(), Limit(rate=1, burst=3), cost=4)
    with pytest.raises(ValueError, match="rate"):
        await harness.limiter.hit(key(), Limit(rate=0, burst=3))
    with pytest.raises(ValueError, match="burst"):
        await harness.limiter.hit(key(), Limit(rate=1, burst=0))


# ------------------------------------------------------------------ memory only


async def test_memory_stays_bounded_and_evicts_least_recently_used() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock, max_keys=100)
    limit = Limit(rate=1, burst=1)
    for i in range(10_000):
        assert (await limiter.hit(f"k{i}", limit)).allowed
        assert len(limiter) <= 100
    assert len(limiter) == 100

    small = MemoryRateLimiter(clock=clock, max_keys=3)
    for k in ("a", "b", "c"):
        await small.hit(k, limit)
    assert not (await small.hit("a", limit)).allowed  # "a" is now the most recently used
    await small.hit("d", limit)  # evicts "b", the least recently used
    assert len(small) == 3
    assert not (await small.hit("a", limit)).allowed  # remembered
    assert (await small.hit("b", limit)).allowed  # forgotten: a fresh bucket


async def test_memory_drops_full_buckets() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    limit = Limit(rate=10, burst=5)
    for i in range(50):
        await limiter.hit(f"k{i}", limit)
    assert len(limiter) == 50
    await clock.advance(1.0)  # every bucket has refilled
    await limiter.hit("new", limit)
    assert len(limiter) == 1


# ------------------------------------------------------------------ redis only


async def test_redis_instances_share_one_bucket(redis_server: RedisServer) -> None:
    first = RedisRateLimiter.from_url(redis_server.url)
    second = RedisRateLimiter(aioredis.Redis.from_url(redis_server.url), owns_client=True)
    limit = Limit(rate=1, burst=5)
    k = key()
    try:
        for _ in range(3):
            assert (await first.hit(k, limit)).allowed
        seen = await second.hit(k, limit)
        assert (seen.allowed, seen.remaining) == (True, 1)
        assert (await second.hit(k, limit)).allowed
        assert not (await first.hit(k, limit)).allowed
        assert not (await second.hit(k, limit)).allowed
    finally:
        await first.aclose()
        await second.aclose()


async def test_redis_keys_expire_and_prefix_is_used(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    limiter = RedisRateLimiter(client, prefix="cg:test:")
    k = key()
    try:
        await limiter.hit(k, Limit(rate=20, burst=4), cost=2)  # 100 ms of debt
        ttl_ms = await client.pttl(f"cg:test:{k}")
        assert 0 < ttl_ms <= 101
        await asyncio.sleep(0.15)
        assert await client.exists(f"cg:test:{k}") == 0
    finally:
        await limiter.aclose()  # not owned: the client stays open
        assert await client.ping()
        await client.aclose()


async def test_redis_survives_script_flush(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    limiter = RedisRateLimiter(client, owns_client=True)
    k = key()
    limit = Limit(rate=1, burst=2)
    try:
        assert (await limiter.hit(k, limit)).allowed
        await client.script_flush()  # as after a Redis restart: EVALSHA gets NOSCRIPT
        decision = await limiter.hit(k, limit)
        assert (decision.allowed, decision.remaining) == (True, 0)
    finally:
        await limiter.aclose()


def test_provider_policies_have_published_defaults_and_overrides() -> None:
    from chatgate.domain.errors import ConfigurationError
    from chatgate.ratelimit.base import Limit
    from chatgate.ratelimit.policies import RatePolicies

    defaults = RatePolicies()
    assert defaults.limit("telegram_bot", "chat") == Limit(1, 3)
    assert defaults.limit("telegram_bot", "bot").rate == 30
    assert defaults.limit("telegram_bot", "group").rate == pytest.approx(20 / 60)
    assert defaults.limit("whatsapp_cloud", "number").rate == 80
    assert defaults.limit("twilio", "sender").rate == 10
    assert defaults.limit("twilio", "sender_media").rate == 1.5
    tuned = RatePolicies({"whatsapp_cloud": {"number": [250, 250]}})
    assert tuned.limit("whatsapp_cloud", "number") == Limit(250, 250)
    with pytest.raises(ConfigurationError, match="rate_per_second"):
        RatePolicies({"twilio": {"sender": [0, 1]}})
    with pytest.raises(ConfigurationError, match="no rate policy"):
        defaults.limit("twilio", "fax")
