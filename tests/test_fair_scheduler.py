"""The fair scheduler's batch mode: a busy scheduler lingers for fuller batches, an idle one
never makes a lone item wait."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from chatgate.workers.fair import BUSY_WINDOW, FairScheduler
from chatgate.workers.queue import QueueItem


class Batches:
    def __init__(self) -> None:
        self.seen: list[list[str]] = []
        self.at: list[float] = []
        self.changed = asyncio.Event()

    async def handle(self, items: list[QueueItem]) -> None:
        self.seen.append([item.job_id for item in items])
        self.at.append(time.monotonic())
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.seen) < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(scheduler: FairScheduler) -> AsyncIterator[FairScheduler]:
    task = asyncio.create_task(scheduler.run())
    try:
        yield scheduler
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def item(job_id: str) -> QueueItem:
    return QueueItem(job_id, "ten_1")


async def test_a_busy_scheduler_lingers_for_a_fuller_batch() -> None:
    batches = Batches()
    scheduler = FairScheduler("t", batch_handler=batches.handle, concurrency=1, linger=0.3)
    async with running(scheduler):
        await scheduler.offer(item("a"))
        await batches.wait_for(1)  # idle before: went at once, alone
        await scheduler.offer(item("b"))  # just after a batch: busy, so b waits for company
        await asyncio.sleep(0.05)
        await scheduler.offer(item("c"))
        await batches.wait_for(2)
    assert batches.seen == [["a"], ["b", "c"]]


async def test_an_idle_scheduler_never_makes_a_lone_item_wait() -> None:
    batches = Batches()
    scheduler = FairScheduler("t", batch_handler=batches.handle, concurrency=1, linger=2.0)
    async with running(scheduler):
        offered = time.monotonic()
        await scheduler.offer(item("a"))
        await batches.wait_for(1)
        assert batches.at[0] - offered < 1.0
        await asyncio.sleep(BUSY_WINDOW * 1.5)  # quiet again
        offered = time.monotonic()
        await scheduler.offer(item("b"))
        await batches.wait_for(2)
        assert batches.at[1] - offered < 1.0
    assert batches.seen == [["a"], ["b"]]


async def test_without_linger_a_batch_takes_only_what_is_waiting() -> None:
    batches = Batches()
    scheduler = FairScheduler("t", batch_handler=batches.handle, concurrency=1)
    async with running(scheduler):
        await scheduler.offer(item("a"))
        await batches.wait_for(1)
        await scheduler.offer(item("b"))
        await batches.wait_for(2)
        await scheduler.offer(item("c"))
        await batches.wait_for(3)
    assert batches.seen == [["a"], ["b"], ["c"]]
