"""Inbound jobs are made when work starts: the ingest stores a raw event alone, a worker makes
the event's job when it takes the event up, and the sweeper makes the jobs of events whose
queue message was lost. On every database (the statements differ)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from chatgate.domain.ids import inbound_job_id
from chatgate.store.models import Job, RawEvent
from chatgate.store.repositories.jobs import JobStore
from chatgate.workers.queue import QueueItem
from chatgate.workers.sweeper import Sweeper
from tests.conftest import Api
from tests.webhook_helpers import ingest_empty_events, webhook_integration


class RecordingQueue:
    """The queue as the sweeper sees it: what was published, per topic."""

    def __init__(self) -> None:
        self.published: list[tuple[str, QueueItem]] = []

    async def publish(self, topic: str, items: list[QueueItem]) -> None:
        self.published += [(topic, item) for item in items]


async def _stored(api: Api, count: int) -> tuple[str, list[str]]:
    """A tenant's `count` raw events, stored by the ingest (workers off): (tenant id, raw ids)."""
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    return tenant.id, await ingest_empty_events(api, tenant, integration["id"], count)


async def _jobs(api: Api, tenant_id: str) -> dict[str, Job]:
    async with api.container.db.sessions() as session:
        found = (await session.execute(select(Job).where(Job.tenant_id == tenant_id))).scalars()
        return {job.subject_id: job for job in found}


async def test_the_sweeper_makes_and_publishes_the_jobs_of_raw_events_nobody_took_up(quiet: Api) -> None:
    api = quiet
    tenant_id, raw_ids = await _stored(api, 3)
    now = datetime.now(UTC)
    async with api.container.db.transaction() as session:  # a worker took the first one up
        await JobStore(session).make_inbound_jobs([inbound_job_id(raw_ids[0])], now)
    assert set(await _jobs(api, tenant_id)) == {raw_ids[0]}
    async with api.container.db.transaction() as session:  # not waiting long enough yet
        assert await JobStore(session).adopt_waiting_raw_events(now - timedelta(seconds=30), 100) == 0
    queue = RecordingQueue()
    later = now + timedelta(seconds=31)
    sweeper = Sweeper(api.container.db, queue, lambda: later, redispatch_after=timedelta(seconds=30))  # type: ignore[arg-type]
    assert await sweeper.sweep_once() == 3  # the two without a job, and the first (never published)
    jobs = await _jobs(api, tenant_id)
    assert set(jobs) == set(raw_ids)
    for raw_id in raw_ids:
        job = jobs[raw_id]
        assert (job.id, job.kind, job.status, job.attempts) == (
            inbound_job_id(raw_id),
            "inbound",
            "pending",
            0,
        )
    assert sorted(item.job_id for _, item in queue.published) == sorted(inbound_job_id(r) for r in raw_ids)
    assert {topic for topic, _ in queue.published} == {"inbound"}
    async with api.container.db.transaction() as session:  # each is made once
        assert await JobStore(session).adopt_waiting_raw_events(later, 100) == 0


async def test_a_worker_takes_the_events_up_and_processes_them_once(quiet: Api) -> None:
    api = quiet
    tenant_id, raw_ids = await _stored(api, 2)
    items = [QueueItem(inbound_job_id(raw_id), tenant_id) for raw_id in raw_ids]
    await api.container.inbound_processor.handle_batch(items)
    await api.container.inbound_processor.handle_batch(items)  # delivered twice by the queue
    jobs = await _jobs(api, tenant_id)
    assert [(jobs[r].status, jobs[r].attempts) for r in raw_ids] == [("done", 1), ("done", 1)]
    async with api.container.db.sessions() as session:
        statuses = (await session.execute(select(RawEvent.status).where(RawEvent.id.in_(raw_ids)))).scalars()
        assert list(statuses) == ["ignored", "ignored"]  # `{}` carries no message


async def test_a_replay_makes_the_events_job_due_again_or_makes_it(quiet: Api) -> None:
    api = quiet
    tenant_id, raw_ids = await _stored(api, 2)
    await api.container.inbound_processor.handle_batch([QueueItem(inbound_job_id(raw_ids[0]), tenant_id)])
    assert (await _jobs(api, tenant_id))[raw_ids[0]].status == "done"
    now = datetime.now(UTC)
    async with api.container.db.transaction() as session:
        store = JobStore(session)
        assert await store.requeue_inbound(raw_ids[0], tenant_id, now) == inbound_job_id(raw_ids[0])
        assert await store.requeue_inbound(raw_ids[1], tenant_id, now) == inbound_job_id(raw_ids[1])
    jobs = await _jobs(api, tenant_id)
    for raw_id in raw_ids:
        assert (jobs[raw_id].id, jobs[raw_id].status, jobs[raw_id].attempts) == (
            inbound_job_id(raw_id),
            "pending",
            0,
        )
