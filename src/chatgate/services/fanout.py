"""What happens to events once they are in the log: hooks inside the same transaction
(webhook deliveries are created atomically with their event), and after commit (queue
publishing, waking live streams and long polls)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.store.models import Event
from chatgate.workers.queue import QueueItem

Publish = Callable[[str, list[QueueItem]], Awaitable[None]]
Broadcast = Callable[[str, int], Awaitable[None]]


class EventHook(Protocol):
    async def in_transaction(
        self, session: AsyncSession, tenant_id: str, events: list[Event], now: datetime
    ) -> list[tuple[str, QueueItem]]:
        """Write what must exist iff the events exist; return queue items to publish after commit."""


class EventNotifier:
    """Wakes waiters (long polls, live streams) of one tenant when its log grows."""

    def __init__(self) -> None:
        self._conditions: dict[str, asyncio.Condition] = defaultdict(asyncio.Condition)
        self._latest: dict[str, int] = {}

    async def notify(self, tenant_id: str, sequence: int) -> None:
        if sequence <= self._latest.get(tenant_id, 0):
            return
        self._latest[tenant_id] = sequence
        condition = self._conditions[tenant_id]
        async with condition:
            condition.notify_all()

    async def wait(self, tenant_id: str, after: int, seconds: float) -> bool:
        """True when the tenant's log may have passed `after` (callers re-query to know)."""
        if self._latest.get(tenant_id, 0) > after:
            return True
        condition = self._conditions[tenant_id]
        try:
            async with asyncio.timeout(seconds), condition:
                await condition.wait()
        except TimeoutError:
            return False
        return True


@dataclass
class PendingFanout:
    tenant_id: str
    last_sequence: int = 0
    items: list[tuple[str, QueueItem]] = field(default_factory=list)


class Fanout:
    def __init__(
        self,
        publish: Publish,
        notifier: EventNotifier,
        hooks: list[EventHook] | None = None,
        *,
        broadcast: Broadcast | None = None,
    ) -> None:
        self.publish = publish
        self.notifier = notifier
        self.hooks = hooks or []
        self.broadcast = broadcast

    async def in_transaction(
        self, session: AsyncSession, tenant_id: str, events: list[Event], now: datetime
    ) -> PendingFanout:
        pending = PendingFanout(tenant_id, max((e.sequence for e in events), default=0))
        if events:
            for hook in self.hooks:
                pending.items.extend(await hook.in_transaction(session, tenant_id, events, now))
        return pending

    async def after_commit(self, pending: PendingFanout) -> None:
        by_topic: dict[str, list[QueueItem]] = defaultdict(list)
        for topic, item in pending.items:
            by_topic[topic].append(item)
        for topic, items in by_topic.items():
            await self.publish(topic, items)
        if pending.last_sequence:
            await self.notifier.notify(pending.tenant_id, pending.last_sequence)
            if self.broadcast is not None:  # wake waiters in the other processes too
                await self.broadcast(pending.tenant_id, pending.last_sequence)
