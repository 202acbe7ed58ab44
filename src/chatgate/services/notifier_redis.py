"""Carries "tenant T's log reached sequence N" between processes through Redis pub/sub.

Scaled mode commits events in worker processes while live streams and long polls wait in API
processes. Each process publishes after its commits and relays what it hears to its local
EventNotifier. Redis is only a shortcut: a lost message costs a waiter at most one poll
interval, because EventFeed re-reads the database regardless (invariant 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chatgate.services.fanout import EventNotifier
from chatgate.workers.pause import wait_until_stopped

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "cg:events"
_FIRST_BACKOFF = 0.1


class RedisEventBridge:
    def __init__(
        self,
        redis: Redis,
        notifier: EventNotifier,
        channel: str = DEFAULT_CHANNEL,
        *,
        publish_timeout: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.redis = redis
        self.notifier = notifier
        self.channel = channel
        self.publish_timeout = publish_timeout
        self.max_backoff = max_backoff

    async def publish(self, tenant_id: str, sequence: int) -> None:
        """Never raises: it runs after a commit, and the commit must not look failed."""
        try:
            async with asyncio.timeout(self.publish_timeout):
                await self.redis.publish(self.channel, f"{tenant_id}:{sequence}")
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not publish event sequence to Redis: %s", type(exc).__name__)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay published sequences to the local notifier until `stop` is set."""
        backoff = _FIRST_BACKOFF
        while not stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                backoff = _FIRST_BACKOFF
                while not stop.is_set():
                    # A bounded wait, so `stop` is noticed within half a second.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None:
                        await self._relay(message["data"])
            except (RedisError, OSError) as exc:
                log.warning(
                    "Redis event subscription failed (%s); retrying in %.1f s", type(exc).__name__, backoff
                )
                await wait_until_stopped(stop, backoff)
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    async def _relay(self, data: object) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        tenant_id, _, sequence = text.rpartition(":")
        if not tenant_id or not sequence.isdigit():
            log.warning("ignoring a malformed message on %s", self.channel)
            return
        await self.notifier.notify(tenant_id, int(sequence))
