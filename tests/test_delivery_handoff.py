"""Deliveries handed to this process's delivery worker by the transaction that creates them.

With the embedded queue and a delivery consumer running in the process, the inbound
transaction inserts each delivery job already claimed by this worker and publishes what the
claim would have read, so the attempt starts without a claim transaction. What is handed over
must be exactly what the claim would read; a hand-off that waited too long is left to the
sweeper; without a local consumer nothing changes. On every database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, select, update

from chatgate.services.webhook_delivery import _READ, _Loaded, _loaded
from chatgate.store.models import Job, WebhookDelivery
from chatgate.workers.queue import QueueItem
from chatgate.workers.sweeper import Sweeper
from tests.conftest import Api
from tests.webhook_helpers import (
    Receiver,
    receive_and_process,
    subscribe,
)


@asynccontextmanager
async def delivery_consumer(api: Api) -> AsyncIterator[list[QueueItem]]:
    """A consumer of "deliver" in this process that only collects what it is given."""
    items: list[QueueItem] = []

    async def collect(item: QueueItem) -> None:
        items.append(item)

    task = asyncio.create_task(api.container.queue.consume("deliver", collect))
    await asyncio.sleep(0)  # registered as a consumer
    try:
        yield items
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def process_messages(api: Api, receiver: Receiver, count: int) -> str:
    """A tenant with an endpoint, `count` inbound messages stored and processed; its id."""
    tenant = await api.tenant()
    await subscribe(api, tenant, receiver, event_types=["message.received"])
    await receive_and_process(api, tenant, count)
    return tenant.id


async def settled(items: list[QueueItem], count: int) -> list[QueueItem]:
    for _ in range(200):
        if len(items) >= count:
            return items
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(items)} of {count} items arrived")


async def job_row(api: Api, job_id: str) -> Any:
    async with api.container.db.sessions() as session:
        return (
            await session.execute(
                select(Job.status, Job.attempts, Job.leased_by, Job.lease_until).where(Job.id == job_id)
            )
        ).one()


async def test_a_handed_over_delivery_is_what_the_claim_would_read_and_needs_no_claim(
    quiet: Api, receiver: Receiver
) -> None:
    api = quiet
    worker = api.container.delivery_worker
    async with delivery_consumer(api) as items:
        await process_messages(api, receiver, 2)
        handed = await settled(items, 2)
    for item in handed:
        assert isinstance(item.preloaded, _Loaded)
        status, attempts, leased_by, lease_until = await job_row(api, item.job_id)
        assert (status, attempts, leased_by) == ("running", 1, worker.worker_id)
        assert lease_until == item.preloaded.lease_until
        # the turn's own read of this claim, from the database
        async with api.container.db.sessions() as session:
            params = {
                "b_claims": [item.job_id],
                "b_held": [],
                "b_worker": worker.worker_id,
                "b_until": lease_until,
            }
            (row,) = await _READ.rows(session, params)
        read = _loaded(row)
        handed_over = item.preloaded
        assert (handed_over.job, handed_over.delivery) == (read.job, read.delivery)
        assert handed_over.endpoint == read.endpoint
        assert handed_over.event == read.event  # data, time and all, as the database returns them

    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    engine = api.container.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for item in handed:
            await worker.handle(item)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(receiver.requests) == 2
    claims = [s for s in statements if s.lstrip().upper().startswith("UPDATE JOBS") and "attempts +" in s]
    assert claims == []  # no claim: the recording turns only
    async with api.container.db.sessions() as session:
        statuses = (await session.execute(select(WebhookDelivery.status))).scalars().all()
        jobs = (await session.execute(select(Job.status).where(Job.kind == "deliver"))).scalars().all()
    assert sorted(statuses) == ["succeeded", "succeeded"]
    assert sorted(jobs) == ["done", "done"]


async def test_a_hand_off_that_waited_too_long_is_left_to_the_sweeper(quiet: Api, receiver: Receiver) -> None:
    api = quiet
    worker = api.container.delivery_worker
    async with delivery_consumer(api) as items:
        await process_messages(api, receiver, 1)
        (item,) = await settled(items, 1)
        clock = worker.clock
        worker.clock = lambda: clock() + timedelta(seconds=worker.lease.total_seconds() * 0.6)
        try:
            await worker.handle(item)  # less than half its lease left: could lapse mid-attempt
        finally:
            worker.clock = clock
        assert receiver.requests == []
        assert (await job_row(api, item.job_id))[0] == "running"

        # the lease runs out (the process died, or here: time passed); the sweeper sends it again
        async with api.container.db.transaction() as session:
            await session.execute(
                update(Job).where(Job.id == item.job_id).values(lease_until=clock() - timedelta(seconds=1))
            )
        sweeper = Sweeper(api.container.db, api.container.queue, clock)
        assert await sweeper.sweep_once() == 1
        (_, again) = await settled(items, 2)
    assert again.job_id == item.job_id
    assert again.preloaded is None  # from the sweeper: claimed the usual way
    await worker.handle(again)
    assert len(receiver.requests) == 1
    assert (await job_row(api, item.job_id))[0] == "done"


async def test_without_a_delivery_consumer_here_deliveries_wait_in_the_queue_unclaimed(
    quiet: Api, receiver: Receiver
) -> None:
    api = quiet
    published: list[QueueItem] = []
    publish = api.container.fanout.publish

    async def capture(topic: str, items: list[QueueItem]) -> None:
        published.extend(item for item in items if topic == "deliver")
        await publish(topic, items)

    api.container.fanout.publish = capture
    await process_messages(api, receiver, 1)
    (item,) = published
    assert item.preloaded is None
    status, attempts, leased_by, _ = await job_row(api, item.job_id)
    assert (status, attempts, leased_by) == ("pending", 0, None)
    await api.container.delivery_worker.handle(item)
    assert len(receiver.requests) == 1
