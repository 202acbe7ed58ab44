"""Fair scheduling across tenants: one tenant's burst never starves another's work.

Items are buffered per tenant and executors take them round-robin, tenant by tenant, so a
tenant with 10,000 queued sends and a tenant with one both make progress at once. The buffer
holds only pointers; if it is lost (the process dies) the sweeper re-dispatches the jobs.

Two modes:
- per item (`handler`): any number of a tenant's items run at once (sending);
- per tenant batch (`batch_handler`): a tenant's items run one batch at a time, in order, up to
  `max_batch` together (inbound processing: per-tenant order, one transaction per batch).
  With `linger`, a batch that is not full waits that long for more of its tenant's items, but
  only while the scheduler is busy (a batch ended within the last `BUSY_WINDOW`): under a steady
  stream, fewer and larger batches cost less per item than many small ones, which keeps the
  loop less busy and every queue shorter; a lone item after a quiet spell does not wait.

Per item, a `prepare` step may run ahead of the executors: one task keeps up to `prefetch`
items prepared, taking buffered items round-robin across tenants, up to `max_prepare` at a
time, and prepares them together (sending claims and
loads them in one transaction); executors then take prepared items, again round-robin across
tenants. Items `prepare` does not return (not claimable) are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from chatgate.workers.queue import Handler, QueueItem

log = logging.getLogger(__name__)

BatchHandler = Callable[[list[QueueItem]], Awaitable[None]]
BUSY_WINDOW = 0.1  # seconds since the last batch ended for the scheduler to count as busy
Prepare = Callable[[list[QueueItem]], Awaitable[list[QueueItem]]]


def _take_round_robin(queues: OrderedDict[str, deque[QueueItem]], limit: int) -> list[QueueItem]:
    """Up to `limit` items, one per tenant per turn; a tenant with items left goes to the back."""
    items: list[QueueItem] = []
    while queues and len(items) < limit:
        tenant = next(iter(queues))
        queue = queues.pop(tenant)
        items.append(queue.popleft())
        if queue:
            queues[tenant] = queue
    return items


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
        prepare: Prepare | None = None,
        prefetch: int = 2048,
        max_prepare: int = 512,
        linger: float = 0.0,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler or batch_handler")
        if prepare is not None and batch_handler is not None:
            raise ValueError("prepare works with a per-item handler only")
        self.name = name
        self.handler = handler
        self.batch_handler = batch_handler
        self.prepare = prepare
        self.prefetch = max(1, prefetch)
        self.max_prepare = max(1, max_prepare)
        self.max_batch = max_batch if batch_handler is not None else 1
        self.concurrency = concurrency
        self.max_buffered = max_buffered
        self.linger = linger if batch_handler is not None else 0.0
        self._last_batch_end = float("-inf")
        self._queues: OrderedDict[str, deque[QueueItem]] = OrderedDict()  # offered, not yet prepared
        self._size = 0
        self._ready: OrderedDict[str, deque[QueueItem]] = OrderedDict()  # prepared (with `prepare`)
        self._ready_size = 0
        self._preparing = 0
        self._busy_tenants: set[str] = set()
        # Conditions on one lock, each woken one waiter at a time: waking every idle executor
        # for every item (notify_all) cost more CPU than a send itself.
        self._lock = asyncio.Lock()
        self._work = asyncio.Condition(self._lock)  # executors wait here for an item
        self._space = asyncio.Condition(self._lock)  # `offer` waits here while the buffer is full
        self._intake = asyncio.Condition(self._lock)  # the preparer waits here for items and room
        self._in_flight: set[str] = set()

    @property
    def buffered(self) -> int:
        return self._size + self._ready_size + self._preparing

    async def offer(self, item: QueueItem) -> None:
        """Buffer an item (waits while the buffer is full: back-pressure on the queue)."""
        async with self._lock:
            await self._space.wait_for(lambda: self._size < self.max_buffered)
            if item.job_id in self._in_flight:
                return  # the same job is already waiting or running here
            self._in_flight.add(item.job_id)
            self._queues.setdefault(item.tenant_id, deque()).append(item)
            self._size += 1
            if self.prepare is not None:
                self._intake.notify(1)
            else:
                self._work.notify(1)

    # ------------------------------------------------------------------ executors

    def _pick(self) -> str | None:
        if self.prepare is not None:
            return next(iter(self._ready), None)
        if self.batch_handler is None:
            return next(iter(self._queues), None)
        return next((t for t in self._queues if t not in self._busy_tenants), None)

    async def _next(self) -> tuple[str, list[QueueItem]]:
        async with self._lock:
            await self._work.wait_for(lambda: self._pick() is not None)
            tenant = self._pick()
            assert tenant is not None
            source = self._ready if self.prepare is not None else self._queues
            queue = source.pop(tenant)
            items = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
            if queue:
                source[tenant] = queue  # round-robin: back of the line
            if self.prepare is not None:
                self._ready_size -= len(items)
                if self._wants_prepare():
                    self._intake.notify(1)
            else:
                self._size -= len(items)
                self._space.notify(len(items))
            if self.batch_handler is not None:
                self._busy_tenants.add(tenant)
            if self._pick() is not None:
                self._work.notify(1)  # more work: pass the wake-up on to another executor
        return tenant, items

    async def _done(self, tenant: str, items: list[QueueItem]) -> None:
        async with self._lock:
            for item in items:
                self._in_flight.discard(item.job_id)
            if self.batch_handler is not None:
                self._busy_tenants.discard(tenant)
                if tenant in self._queues:
                    self._work.notify(1)  # the tenant's next batch may go now

    async def _more(self, tenant: str, room: int) -> list[QueueItem]:
        """Up to `room` more items of a tenant whose batch is being formed (it is busy: no
        other executor takes them)."""
        async with self._lock:
            queue = self._queues.get(tenant)
            if not queue:
                return []
            items = [queue.popleft() for _ in range(min(room, len(queue)))]
            if not queue:
                del self._queues[tenant]
            self._size -= len(items)
            self._space.notify(len(items))
            return items

    async def _executor(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            tenant, items = await self._next()
            if (
                self.linger
                and len(items) < self.max_batch
                and loop.time() - self._last_batch_end < BUSY_WINDOW
            ):
                await asyncio.sleep(self.linger)
                items += await self._more(tenant, self.max_batch - len(items))
            try:
                if self.batch_handler is not None:
                    await self.batch_handler(items)
                else:
                    assert self.handler is not None
                    await self.handler(items[0])
            except Exception:
                log.exception("%s: handler failed for %d item(s) of tenant %s", self.name, len(items), tenant)
            finally:
                if self.batch_handler is not None:
                    self._last_batch_end = loop.time()
                await self._done(tenant, items)

    # ------------------------------------------------------------------ the preparer

    def _wants_prepare(self) -> bool:
        # Refill when half the prefetch is used up, so each prepare call takes a batch.
        return bool(self._queues) and self._ready_size + self._preparing <= self.prefetch // 2

    async def _preparer(self) -> None:
        assert self.prepare is not None
        while True:
            async with self._lock:
                await self._intake.wait_for(self._wants_prepare)
                room = min(self.max_prepare, self.prefetch - self._ready_size - self._preparing)
                items = _take_round_robin(self._queues, room)
                self._size -= len(items)
                self._preparing += len(items)
                self._space.notify(len(items))
            try:
                ready = await self.prepare(items)
            except Exception:
                log.exception("%s: preparing %d item(s) failed", self.name, len(items))
                ready = []
            async with self._lock:
                self._preparing -= len(items)
                kept = {item.job_id for item in ready}
                for item in items:
                    if item.job_id not in kept:
                        self._in_flight.discard(item.job_id)
                for item in ready:
                    self._ready.setdefault(item.tenant_id, deque()).append(item)
                self._ready_size += len(ready)
                self._work.notify(len(ready))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self.prepare is not None:
                group.create_task(self._preparer(), name=f"{self.name}-preparer")
            for index in range(self.concurrency):
                group.create_task(self._executor(), name=f"{self.name}-executor-{index}")
