"""Fair scheduling across tenants: one tenant's burst never starves another's work.

Items are buffered per tenant and executors take them round-robin, tenant by tenant, so a
tenant with 10,000 queued sends and a tenant with one both make progress at once. The buffer
holds only pointers; if it is lost (the process dies) the sweeper re-dispatches the jobs.

Two modes:
- per item (`handler`): any number of a tenant's items run at once (sending);
- per tenant batch (`batch_handler`): a tenant's items run one batch at a time, in order, up to
  `max_batch` together (inbound processing: per-tenant order, one transaction per batch).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from chatgate.workers.queue import Handler, QueueItem

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[QueueItem]], Awaitable[None]]


class FairScheduler:
    def __init__(
        self,
        name: str,
        handler: Handler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 200,
        concurrency: int = 32,
        max_buffered: int = 100_000,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler or batch_handler")
        self.name = name
        self.handler = handler
        self.batch_handler = batch_handler
        self.max_batch = max_batch if batch_handler is not None else 1
        self.concurrency = concurrency
        self.max_buffered = max_buffered
        self._queues: OrderedDict[str, deque[QueueItem]] = OrderedDict()
        self._size = 0
        self._busy_tenants: set[str] = set()
        self._changed = asyncio.Condition()
        self._in_flight: set[str] = set()

    @property
    def buffered(self) -> int:
        return self._size

    async def offer(self, item: QueueItem) -> None:
        """Buffer an item (waits while the buffer is full: back-pressure on the queue)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._size < self.max_buffered)
            if item.job_id in self._in_flight:
                return  # the same job is already waiting or running here
            self._in_flight.add(item.job_id)
            self._queues.setdefault(item.tenant_id, deque()).append(item)
            self._size += 1
            self._changed.notify_all()

    def _pick(self) -> str | None:
        if self.batch_handler is None:
            return next(iter(self._queues), None)
        return next((t for t in self._queues if t not in self._busy_tenants), None)

    async def _next(self) -> tuple[str, list[QueueItem]]:
        async with self._changed:
            await self._changed.wait_for(lambda: self._pick() is not None)
            tenant = self._pick()
            assert tenant is not None
            queue = self._queues.pop(tenant)
            items = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
            if queue:
                self._queues[tenant] = queue  # round-robin: back of the line
            self._size -= len(items)
            if self.batch_handler is not None:
                self._busy_tenants.add(tenant)
            self._changed.notify_all()
        return tenant, items

    async def _done(self, tenant: str, items: list[QueueItem]) -> None:
        async with self._changed:
            self._busy_tenants.discard(tenant)
            for item in items:
                self._in_flight.discard(item.job_id)
            self._changed.notify_all()

    async def _executor(self) -> None:
        while True:
            tenant, items = await self._next()
            try:
                if self.batch_handler is not None:
                    await self.batch_handler(items)
                else:
                    assert self.handler is not None
                    await self.handler(items[0])
            except Exception:
                log.exception("%s: handler failed for %d item(s) of tenant %s", self.name, len(items), tenant)
            finally:
                await self._done(tenant, items)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for index in range(self.concurrency):
                group.create_task(self._executor(), name=f"{self.name}-executor-{index}")
