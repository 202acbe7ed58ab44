"""GCRA limiter in Redis, shared by every API process and worker.

One Lua script does read-compute-write atomically, using the Redis server's clock
(`TIME`), so any number of processes on any hosts share a bucket exactly and their own
clocks do not matter. Per key only the theoretical arrival time (TAT, microseconds since
the epoch) is stored, with an expiry at the moment the bucket is full again.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from chatgate.ratelimit.base import Decision, Limit
from chatgate.ratelimit.memory import check_request

# KEYS[1]: bucket key. ARGV: emission interval (microseconds per token), burst, cost.
# Returns {allowed (0/1), retry_after in microseconds (string: a float), remaining}.
_GCRA_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tolerance = interval * burst
local eps = 1 -- microseconds: the stored TAT keeps ~0.25 us of resolution
local ahead = 0
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat and tat > now then ahead = tat - now end
local new_ahead = ahead + interval * cost
local remaining
if new_ahead > tolerance + eps then
  remaining = math.floor((tolerance - ahead + eps) / interval)
  if remaining < 0 then remaining = 0 end
  return {0, string.format('%.17g', new_ahead - tolerance), remaining}
end
if new_ahead > 0 then
  redis.call('SET', KEYS[1], string.format('%.17g', now + new_ahead),
             'PX', math.ceil(new_ahead / 1000) + 1)
end
remaining = math.floor((tolerance - new_ahead + eps) / interval)
if remaining < 0 then remaining = 0 end
return {1, '0', remaining}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRateLimiter:
    """GCRA token buckets in Redis (see module docstring).

    `aclose()` closes the Redis client only when the limiter owns it (`owns_client=True`,
    or made by `from_url`), so a client shared with other components stays usable.
    """

    def __init__(self, redis: Redis, prefix: str = "cg:rl:", *, owns_client: bool = False) -> None:
        self._redis = redis
        self._prefix = prefix
        self._owns_client = owns_client
        # EVALSHA, falling back to loading the script on NOSCRIPT (e.g. after a server restart)
        self._script = redis.register_script(_GCRA_LUA)

    @classmethod
    def from_url(cls, url: str, prefix: str = "cg:rl:") -> RedisRateLimiter:
        return cls(Redis.from_url(url), prefix, owns_client=True)

    async def hit(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        check_request(limit, cost)
        interval_us = 1_000_000.0 / limit.rate
        reply = await self._script(keys=[self._prefix + key], args=[repr(interval_us), limit.burst, cost])
        allowed, retry_us, remaining = reply
        return Decision(
            allowed=int(allowed) == 1,
            retry_after=float(_text(retry_us)) / 1_000_000.0,
            remaining=int(remaining),
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._redis.aclose()
