"""The pipeline's invariants, each with a test that fails without it (ARCHITECTURE.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from chatgate.config import Settings
from chatgate.domain.ids import inbound_job_id
from chatgate.services.inbound_processor import LeaseLost
from chatgate.services.ingest_postgres import PostgresIngestStore
from chatgate.services.ingest_sqlite import SqliteIngestStore
from chatgate.store.db import Database
from chatgate.store.models import Event, Job, Message, RawEvent
from chatgate.store.repositories.jobs import JobStore
from chatgate.workers.queue import QueueItem
from chatgate.workers.runner import run_workers
from chatgate.workers.sweeper import Sweeper
from tests.conftest import Api, running_api, unique
from tests.webhook_helpers import (
    Receiver,
    eventually,
    message_payload,
    post_inbound,
    webhook_integration,
)


class MovableClock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
async def quiet_api(settings_factory: Callable[..., Settings]) -> AsyncIterator[tuple[Api, MovableClock]]:
    """No background workers: the test drives processing itself."""
    clock = MovableClock()
    async with running_api(settings_factory(run_workers_in_api=False), clock=clock) as api:
        yield api, clock


async def scalar(api: Api, query: Any) -> Any:
    async with api.container.db.sessions() as session:
        return (await session.execute(query)).scalar_one()


async def pending_jobs(api: Api, kind: str) -> list[Job]:
    async with api.container.db.sessions() as session:
        query = select(Job).where(Job.kind == kind, Job.status != "done")
        return list((await session.execute(query)).scalars())


async def taken_up_inbound_jobs(api: Api) -> list[Job]:
    """The inbound jobs of the raw events still pending, made as a worker makes them when it
    first takes the events up (the ingest stores a raw event alone)."""
    async with api.container.db.transaction() as session:
        raw_ids = (await session.execute(select(RawEvent.id).where(RawEvent.status == "pending"))).scalars()
        await JobStore(session).make_inbound_jobs([inbound_job_id(r) for r in raw_ids], datetime.now(UTC))
    return await pending_jobs(api, "inbound")


async def test_ack_only_after_commit(quiet_api: tuple[Api, MovableClock]) -> None:
    api, _ = quiet_api
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    response = await post_inbound(api, integration, message_payload("x", message_id="m1"), event_id="e1")
    assert response.status_code == 200
    # Visible to a brand-new connection the moment the 200 arrived: it was committed.
    engine = create_async_engine(api.container.settings.effective_database_url)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(func.count()).select_from(RawEvent))).scalar_one()
    finally:
        await engine.dispose()
    assert stored == 1
    # With the database unreachable the provider gets a 503 (and retries), never a 200.
    working, working_rows = api.container.ingest.db, api.container.ingest.row_store
    api.container.ingest.db = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    if isinstance(working_rows, SqliteIngestStore):
        api.container.ingest.row_store = SqliteIngestStore("/nonexistent-dir/chatgate.db")
    elif working_rows is not None:
        api.container.ingest.row_store = PostgresIngestStore("postgresql://nobody@127.0.0.1:1/none")
    try:
        failed = await post_inbound(api, integration, message_payload("y", message_id="m2"), event_id="e2")
    finally:
        await api.container.ingest.db.aclose()
        if api.container.ingest.row_store is not working_rows and api.container.ingest.row_store is not None:
            await api.container.ingest.row_store.aclose()
        api.container.ingest.db, api.container.ingest.row_store = working, working_rows
    assert failed.status_code == 503
    assert "retry" in failed.json()["detail"]


async def test_publish_happens_after_commit(quiet_api: tuple[Api, MovableClock]) -> None:
    api, _ = quiet_api
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    seen_committed: list[bool] = []
    engine = create_async_engine(api.container.settings.effective_database_url)
    original = api.container.sending.publish

    async def checking_publish(topic: str, items: list[QueueItem]) -> None:
        async with engine.connect() as conn:
            count = (
                await conn.execute(select(func.count()).select_from(Job).where(Job.id == items[0].job_id))
            ).scalar_one()
        seen_committed.append(count == 1)
        await original(topic, items)

    api.container.sending.publish = checking_publish
    try:
        response = await api.client.post(
            "/v1/messages",
            json={"integration_id": integration["id"], "to": "c", "text": "hi"},
            headers=tenant.key_headers,
        )
    finally:
        api.container.sending.publish = original
        await engine.dispose()
    assert response.status_code == 202
    assert seen_committed == [True]


async def test_a_dead_workers_job_is_taken_over_after_its_lease(quiet_api: tuple[Api, MovableClock]) -> None:
    api, clock = quiet_api
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    await post_inbound(api, integration, message_payload("survives", message_id="m1"), event_id="e1")
    job = (await taken_up_inbound_jobs(api))[0]
    # Worker "dead" claims the job and dies without finishing it.
    async with api.container.db.transaction() as session:
        assert (
            await JobStore(session).claim(job.id, "dead-worker", clock(), timedelta(seconds=60)) is not None
        )
    processor = api.container.inbound_processor
    await processor.handle(QueueItem(job.id, tenant.id))  # a live worker may not steal a live lease
    assert await scalar(api, select(func.count()).select_from(Message)) == 0
    clock.offset = timedelta(seconds=61)
    sweeper = Sweeper(api.container.db, api.container.queue, clock, redispatch_after=timedelta(seconds=30))
    assert await sweeper.sweep_once() == 1  # the expired lease is put back on the queue
    await processor.handle(QueueItem(job.id, tenant.id))
    assert await scalar(api, select(func.count()).select_from(Message)) == 1
    assert (await pending_jobs(api, "inbound")) == []


async def test_a_slow_worker_that_lost_its_lease_rolls_back(quiet_api: tuple[Api, MovableClock]) -> None:
    api, clock = quiet_api
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    await post_inbound(api, integration, message_payload("once", message_id="m1"), event_id="e1")
    job = (await taken_up_inbound_jobs(api))[0]
    processor = api.container.inbound_processor
    async with api.container.db.transaction() as session:
        claimed = await JobStore(session).claim(job.id, processor.worker_id, clock(), timedelta(seconds=60))
    assert claimed is not None
    # Meanwhile the lease expired and another worker took the job and finished it.
    clock.offset = timedelta(seconds=61)
    async with api.container.db.transaction() as session:
        assert (
            await JobStore(session).claim(job.id, "other-worker", clock(), timedelta(seconds=60)) is not None
        )
    other = type(processor)(
        api.container.db, api.container.adapters, api.container.fanout, clock, "other-worker"
    )
    await other._process([await _job(api, job.id)])
    # The slow worker now tries to commit its own effects: they must not land.
    with pytest.raises(LeaseLost):
        await processor._process([claimed])
    assert await scalar(api, select(func.count()).select_from(Message)) == 1
    assert (
        await scalar(api, select(func.count()).select_from(Event).where(Event.type == "message.received"))
        == 1
    )


async def _job(api: Api, job_id: str) -> Job:
    async with api.container.db.sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def test_duplicate_queue_deliveries_and_replays_have_one_effect(
    quiet_api: tuple[Api, MovableClock],
) -> None:
    api, _ = quiet_api
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    await post_inbound(api, integration, message_payload("one", message_id="m1"), event_id="e1")
    raw_id = await scalar(api, select(RawEvent.id))
    # Five deliveries of the queue item at once: each worker would make the event's job first.
    item = QueueItem(inbound_job_id(raw_id), tenant.id)
    processor = api.container.inbound_processor
    await asyncio.gather(*(processor.handle(item) for _ in range(5)))
    replay = await api.client.post(f"/v1/raw-events/{raw_id}/replay", headers=tenant.key_headers)
    assert replay.status_code == 202
    for pending in await pending_jobs(api, "inbound"):
        await processor.handle(QueueItem(pending.id, tenant.id))
    assert await scalar(api, select(func.count()).select_from(Message)) == 1
    assert await scalar(api, select(func.count()).select_from(Event)) == 3  # contact, conversation, message


async def test_a_lost_queue_message_is_redispatched_by_the_sweeper(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(redispatch_after_seconds=1, sweeper_interval_seconds=0.2)
    async with running_api(settings) as api:
        tenant = await api.tenant()
        integration = await webhook_integration(api, tenant)

        async def lose(topic: str, items: list[QueueItem]) -> None:
            return None  # a broker that drops everything

        api.container.ingest.publish = lose
        started = time.monotonic()
        await post_inbound(api, integration, message_payload("not lost", message_id="m1"), event_id="e1")
        await eventually(lambda: scalar(api, select(func.count()).select_from(Message)), timeout=10)
        assert time.monotonic() - started >= 0.9  # it came through the sweeper, not the queue


async def test_provider_retry_after_pauses_only_its_bucket(
    settings_factory: Callable[..., Settings], receiver: Receiver
) -> None:
    async with running_api(settings_factory()) as api:
        tenant = await api.tenant()
        slow = await webhook_integration(api, tenant, receiver.url + "/limited")
        fast = await webhook_integration(api, tenant, receiver.url + "/open")
        receiver.responses.append((429, {"Retry-After": "2"}))
        first = await _send(api, tenant, slow["id"], "to-limited")
        await eventually(lambda: _requests_to(receiver, "/limited"))
        started = time.monotonic()
        second = await _send(api, tenant, fast["id"], "to-open")
        await eventually(lambda: _status_is(api, tenant, second, "sent"))
        assert time.monotonic() - started < 1.5  # the other integration was not paused
        await eventually(lambda: _status_is(api, tenant, first, "sent"), timeout=10)
        assert time.monotonic() - started >= 1.5  # the limited one waited for Retry-After
        assert len(_requests_to(receiver, "/limited")) == 2


async def test_transient_errors_retry_then_succeed_and_breaker_opens(
    settings_factory: Callable[..., Settings], receiver: Receiver
) -> None:
    async with running_api(settings_factory()) as api:
        api.container.breakers.threshold = 3
        api.container.breakers.cooldown = 60
        tenant = await api.tenant()
        flaky = await webhook_integration(api, tenant, receiver.url + "/flaky")
        receiver.responses.append((503, {}))
        message = await _send(api, tenant, flaky["id"], "c1")
        await eventually(lambda: _status_is(api, tenant, message, "sent"), timeout=10)
        assert len(_requests_to(receiver, "/flaky")) == 2  # one failure, one retry that worked
        # Now the site is down for good: after 3 failures the breaker stops calling it.
        down = await webhook_integration(api, tenant, receiver.url + "/down")
        receiver.responses.extend([(500, {})] * 50)
        ids = [await _send(api, tenant, down["id"], f"c{i}") for i in range(6)]
        await eventually(lambda: api.container.breakers.is_open(down["id"]), timeout=20)
        await asyncio.sleep(1.0)
        calls = len(_requests_to(receiver, "/down"))
        assert 3 <= calls <= 4, calls
        statuses = {
            (await api.client.get(f"/v1/messages/{i}", headers=tenant.key_headers)).json()["status"]
            for i in ids
        }
        assert statuses == {"queued"}  # held back, not failed: they go out when the provider recovers
        receiver.responses.clear()


async def test_one_tenants_burst_does_not_starve_another(
    settings_factory: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = settings_factory(worker_concurrency=4, run_workers_in_api=False)
    async with running_api(settings) as api:
        receiver.delay = 0.05
        busy = await api.tenant()
        calm = await api.tenant()
        busy_site = await webhook_integration(api, busy, receiver.url + "/busy")
        calm_site = await webhook_integration(api, calm, receiver.url + "/calm")
        # Everything is queued before any worker runs: the busy tenant's 200 sends are ahead.
        for i in range(200):
            await api.container.sending.accept(busy.id, _request(busy_site["id"], f"b{i}"), None)
        calm_message = (
            await api.container.sending.accept(calm.id, _request(calm_site["id"], "c"), None)
        ).message
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(api.container, stop))
        try:
            await eventually(lambda: _status_is(api, calm, calm_message.id, "sent"), timeout=20)
        finally:
            stop.set()
            await workers
        # Round-robin across tenants: the calm tenant is served within the first few turns.
        # Counted at the receiver, in arrival order: how many busy sends went out before the
        # calm one (not how many had gone out by the time a poll saw its status).
        paths = [r["path"] for r in receiver.requests]
        calm_at = next(i for i, path in enumerate(paths) if path.endswith("/calm"))
        busy_done = sum(1 for path in paths[:calm_at] if path.endswith("/busy"))
        assert busy_done <= 8, f"the calm tenant waited for {busy_done} of the busy tenant's sends"
        receiver.delay = 0


def _request(integration_id: str, to: str) -> Any:
    from chatgate.services.sending import SendRequest

    return SendRequest(integration_id=integration_id, to=to, text="hello")


def _requests_to(receiver: Receiver, suffix: str) -> list[dict[str, Any]]:
    return [r for r in receiver.requests if r["path"].endswith(suffix)]


async def _send(api: Api, tenant: Any, integration_id: str, to: str) -> str:
    response = await api.client.post(
        "/v1/messages",
        json={"integration_id": integration_id, "to": to, "text": unique("text ")},
        headers=tenant.key_headers,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["message"]["id"])


async def _status_is(api: Api, tenant: Any, message_id: str, status: str) -> bool:
    current = (await api.client.get(f"/v1/messages/{message_id}", headers=tenant.key_headers)).json()
    return bool(current["status"] == status)
