"""The batched send path: group commits, prepared claims, paced budgets (issue 3).

Claims and outcomes of concurrent sends share transactions; nothing about a send's result may
change because of it: each message is sent once, moves to `sent` once with one event, and a
job whose lease was lost rolls back alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select, update

from chatgate.config import Settings
from chatgate.domain.errors import InvalidInput
from chatgate.providers.base import SendResult
from chatgate.ratelimit.base import JITTER_GUARD, Limit, paced, within_budget
from chatgate.ratelimit.memory import MemoryRateLimiter
from chatgate.services.inbound_processor import LeaseLost
from chatgate.services.send_worker import _Sent
from chatgate.services.sending import SendRequest
from chatgate.store.models import Event, Integration, Job, Message
from chatgate.workers.batcher import GroupBatcher
from chatgate.workers.fair import FairScheduler
from chatgate.workers.queue import QueueItem
from chatgate.workers.runner import run_workers
from tests.conftest import Api, running_api
from tests.webhook_helpers import (
    INBOUND_SECRET,
    OUTBOUND_SECRET,
    Receiver,
    eventually,
    webhook_integration,
)


def busiest(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= width:
            j += 1
        best = max(best, i - j + 1)
    return best


# ------------------------------------------------------------------ units


async def test_group_batcher_runs_concurrent_calls_together_and_keeps_errors_apart() -> None:
    seen: list[list[int]] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        await asyncio.sleep(0.01)
        return [InvalidInput("odd") if i % 2 else i * 10 for i in items]

    batcher: GroupBatcher[int, int] = GroupBatcher("test", run, max_batch=50)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(100)), return_exceptions=True)
    assert [r if isinstance(r, int) else "error" for r in results] == [
        i * 10 if i % 2 == 0 else "error" for i in range(100)
    ]
    assert len(seen) <= 3  # one lone first call at most, then batches of up to 50
    assert max(len(b) for b in seen) == 50

    async def broken(items: list[int]) -> list[int | BaseException]:
        raise RuntimeError("database down")

    failing: GroupBatcher[int, int] = GroupBatcher("broken", broken)
    outcomes = await asyncio.gather(*(failing.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    await failing.idle()
    assert not failing.running


async def test_items_that_may_wait_linger_together_until_one_that_may_not_arrives() -> None:
    """Bookkeeping (even numbers here) waits up to the linger for company; an item that may not
    wait (odd) ends the wait at once and runs with whatever has gathered."""
    batches: list[tuple[float, list[int]]] = []
    started = time.perf_counter()

    async def run(items: list[int]) -> list[int | BaseException]:
        batches.append((time.perf_counter() - started, items))
        results: list[int | BaseException] = list(items)
        return results

    linger = 0.3
    batcher: GroupBatcher[int, int] = GroupBatcher(
        "linger", run, linger=linger, may_wait=lambda item: item % 2 == 0
    )
    first = [asyncio.create_task(batcher.submit(i)) for i in (0, 2)]
    await asyncio.sleep(0.05)
    first.append(asyncio.create_task(batcher.submit(4)))  # joins the lingering batch
    assert await asyncio.gather(*first) == [0, 2, 4]
    assert batches[0][1] == [0, 2, 4]
    assert batches[0][0] >= linger * 0.9  # it waited the linger out

    batches.clear()
    started = time.perf_counter()
    waiting = asyncio.create_task(batcher.submit(6))
    await asyncio.sleep(0.05)
    assert not batches  # still lingering
    assert await batcher.submit(7) == 7  # may not wait: ends the linger
    assert await waiting == 6
    assert batches[0][1] == [6, 7]
    assert batches[0][0] < linger / 2

    plain: GroupBatcher[int, int] = GroupBatcher("plain", run)  # no linger: runs at once
    batches.clear()
    started = time.perf_counter()
    assert await plain.submit(8) == 8
    assert batches[0][0] < linger / 2


@pytest.mark.parametrize(
    "limit", [paced(20), paced(100), Limit(30, 3), Limit(80, 8), Limit(1, 3), Limit(200, 50), Limit(10, 10)]
)
async def test_a_send_bucket_never_passes_more_than_its_budget_in_any_sliding_second(limit: Limit) -> None:
    now = [1000.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    budgeted = within_budget(limit)
    passed: list[float] = []
    while now[0] < 1006.0:  # greedy: ask again the moment the limiter says a token is back
        decision = await limiter.hit("k", budgeted)
        if decision.allowed:
            passed.append(now[0])
        else:
            now[0] += decision.retry_after
    budget = int(limit.rate)
    # every window, the first second included, even if sends drift by the guard each way
    assert busiest(passed, 1.0 + 2 * JITTER_GUARD - 1e-9) <= budget
    assert len([t for t in passed if t < 1001.0]) <= budget
    assert len(passed) / 6.0 >= (budget - budgeted.burst + 1) * 0.9  # and the budget is used


def test_slow_budgets_keep_their_meaning() -> None:
    per_minute = Limit(20 / 60, 3)
    assert within_budget(per_minute) == per_minute


async def test_the_scheduler_prepares_ahead_round_robin_and_drops_what_was_not_claimed() -> None:
    prepared: list[list[str]] = []
    handled: list[str] = []

    async def prepare(items: list[QueueItem]) -> list[QueueItem]:
        prepared.append([i.job_id for i in items])
        return [i for i in items if not i.job_id.endswith("-x")]  # "-x": claimed elsewhere

    async def handle(item: QueueItem) -> None:
        handled.append(item.job_id)

    scheduler = FairScheduler("t", handle, prepare=prepare, concurrency=1, prefetch=100)
    for n in range(6):
        await scheduler.offer(QueueItem(f"a{n}", "busy"))
    await scheduler.offer(QueueItem("c0", "calm"))
    await scheduler.offer(QueueItem("b0-x", "other"))
    task = asyncio.create_task(scheduler.run())
    try:
        await eventually(lambda: len(handled) == 7, timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert prepared == [["a0", "c0", "b0-x", "a1", "a2", "a3", "a4", "a5"]]  # one batch, tenants interleaved
    assert handled[:2] == ["a0", "c0"]  # the calm tenant's one item goes second, not seventh
    assert "b0-x" not in handled
    assert scheduler.buffered == 0


# ------------------------------------------------------------------ the worker, on every database


async def _count(api: Api, query: Any) -> int:
    async with api.container.db.sessions() as session:
        return int((await session.execute(query)).scalar_one())


async def test_concurrent_sends_commit_together_and_each_counts_once(quiet: Api, receiver: Receiver) -> None:
    api = quiet
    tenants = [await api.tenant(), await api.tenant()]
    sites = [await webhook_integration(api, t, receiver.url + f"/t{n}") for n, t in enumerate(tenants)]
    ids: list[str] = []
    for n in range(60):
        tenant, site = tenants[n % 2], sites[n % 2]
        request = SendRequest(integration_id=site["id"], to=f"c{n % 7}", text=f"hello {n}")
        ids.append((await api.container.sending.accept(tenant.id, request, None)).message.id)
    stop = asyncio.Event()
    workers = asyncio.create_task(run_workers(api.container, stop))
    try:
        done = select(func.count()).select_from(Message).where(Message.id.in_(ids), Message.status == "sent")
        await eventually(lambda: _is(api, done, 60), timeout=30)
    finally:
        stop.set()
        await workers
    texts = sorted(b["text"] for b in receiver.bodies())
    assert texts == sorted(f"hello {n}" for n in range(60))  # each sent once
    status_events = (
        select(func.count())
        .select_from(Event)
        .where(Event.type == "message.status", Event.conversation_id.is_not(None))
    )
    assert await _count(api, status_events.where(Event.dedupe_key.like("status:%:sent"))) >= 60
    for tenant in tenants:  # one `sent` event per message, numbered without gaps
        async with api.container.db.sessions() as session:
            rows = (
                await session.execute(
                    select(Event.sequence, Event.dedupe_key)
                    .where(Event.tenant_id == tenant.id)
                    .order_by(Event.sequence)
                )
            ).all()
        sequences = [r.sequence for r in rows]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        sent_keys = [r.dedupe_key for r in rows if r.dedupe_key and r.dedupe_key.endswith(":sent")]
        assert len(sent_keys) == len(set(sent_keys)) == 30
    totals = select(func.sum(Integration.messages_sent)).where(Integration.id.in_([s["id"] for s in sites]))
    assert await _count(api, totals) == 60
    unfinished = select(func.count()).select_from(Job).where(Job.kind == "send", Job.status != "done")
    assert await _count(api, unfinished) == 0
    assert api.container.send_worker.records.batches < 60  # outcomes shared commits


async def _is(api: Api, query: Any, expected: int) -> bool:
    return await _count(api, query) == expected


async def test_a_send_whose_lease_was_lost_rolls_back_alone(quiet: Api) -> None:
    api = quiet
    tenant = await api.tenant()
    site = await webhook_integration(api, tenant)
    worker = api.container.send_worker
    accepted = [
        (
            await api.container.sending.accept(
                tenant.id, SendRequest(integration_id=site["id"], to="c", text=f"m{n}"), None
            )
        ).message.id
        for n in range(3)
    ]
    async with api.container.db.sessions() as session:
        jobs = {
            job.subject_id: job.id
            for job in (await session.execute(select(Job).where(Job.subject_id.in_(accepted)))).scalars()
        }
    items = [QueueItem(jobs[m], tenant.id) for m in accepted]
    assert await worker.prepare(items) == items
    prepared = [worker._prepared.pop(item.job_id) for item in items]
    async with api.container.db.transaction() as session:  # another worker took the second job over
        await session.execute(update(Job).where(Job.id == items[1].job_id).values(leased_by="someone-else"))
    outcomes = [
        _Sent(p, SendResult(provider_message_id=f"site-{n}"), "webhook") for n, p in enumerate(prepared)
    ]
    results = await worker._record_batch(list(outcomes))
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], LeaseLost)
    async with api.container.db.sessions() as session:
        statuses = dict(
            (await session.execute(select(Message.id, Message.status).where(Message.id.in_(accepted)))).all()
        )
    assert [statuses[m] for m in accepted] == ["sent", "queued", "sent"]


# ------------------------------------------------------------------ paced sends (SQLite)


async def test_rate_limited_sends_wait_in_memory_in_budget_without_holding_up_others(
    settings_factory: Callable[..., Settings], receiver: Receiver
) -> None:
    arrivals: dict[str, list[float]] = {"/slow": [], "/fast": []}

    class Timed(list[dict[str, Any]]):
        def append(self, request: dict[str, Any]) -> None:
            for suffix, times in arrivals.items():
                if request["path"].endswith(suffix):
                    times.append(time.monotonic())
            super().append(request)

    receiver.requests = Timed()
    async with running_api(settings_factory(run_workers_in_api=False, worker_concurrency=4)) as api:
        tenant = await api.tenant()
        response = await api.client.post(
            "/v1/integrations",
            json={
                "kind": "webhook",
                "name": "rate limited site",
                "config": {"outbound_url": receiver.url + "/slow", "rate_limit_per_second": 10},
                "credentials": {"inbound_secret": INBOUND_SECRET, "outbound_secret": OUTBOUND_SECRET},
            },
            headers=tenant.key_headers,
        )
        assert response.status_code == 201, response.text
        slow = response.json()
        fast = await webhook_integration(api, tenant, receiver.url + "/fast")
        slow_ids = [
            (
                await api.container.sending.accept(
                    tenant.id, SendRequest(integration_id=slow["id"], to="a", text=f"s{n}"), None
                )
            ).message.id
            for n in range(25)
        ]
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(api.container, stop))
        try:
            await eventually(lambda: len(arrivals["/slow"]) >= 3, timeout=10)
            fast_id = (
                await api.container.sending.accept(
                    tenant.id, SendRequest(integration_id=fast["id"], to="b", text="f"), None
                )
            ).message.id
            await eventually(lambda: len(arrivals["/fast"]) == 1, timeout=5)
            assert len(arrivals["/slow"]) < 25, "the other integration waited for the whole backlog"
            sent = (
                select(func.count())
                .select_from(Message)
                .where(Message.id.in_([*slow_ids, fast_id]), Message.status == "sent")
            )
            await eventually(lambda: _is(api, sent, 26), timeout=20)
        finally:
            stop.set()
            await workers
        assert len(arrivals["/slow"]) == 25
        assert busiest(arrivals["/slow"]) <= 10
        retried = select(func.count()).select_from(Job).where(Job.subject_id.in_(slow_ids), Job.attempts != 1)
        assert await _count(api, retried) == 0  # each claimed once: the wait was in memory


async def test_a_send_prepared_long_ago_renews_its_lease_or_stays_unsent(
    quiet: Api, receiver: Receiver
) -> None:
    api = quiet
    tenant = await api.tenant()
    site = await webhook_integration(api, tenant, receiver.url + "/late")
    worker = api.container.send_worker
    messages = [
        (
            await api.container.sending.accept(
                tenant.id, SendRequest(integration_id=site["id"], to="c", text=f"late {n}"), None
            )
        ).message.id
        for n in range(2)
    ]
    async with api.container.db.sessions() as session:
        jobs = dict(
            (await session.execute(select(Job.subject_id, Job.id).where(Job.subject_id.in_(messages)))).all()
        )
    items = [QueueItem(jobs[m], tenant.id) for m in messages]
    assert await worker.prepare(items) == items
    long_ago = asyncio.get_running_loop().time() - worker.lease.total_seconds()
    for item in items:  # both waited a whole lease in the ready queue
        worker._prepared[item.job_id] = replace(worker._prepared[item.job_id], claimed_at=long_ago)
    async with api.container.db.transaction() as session:  # meanwhile the second was taken over
        await session.execute(update(Job).where(Job.id == items[1].job_id).values(leased_by="someone-else"))
    for item in items:
        await worker.handle(item)
    await worker.records.idle()
    assert [b["text"] for b in receiver.bodies()] == ["late 0"]  # the taken-over one is not sent here
    async with api.container.db.sessions() as session:
        statuses = dict(
            (await session.execute(select(Message.id, Message.status).where(Message.id.in_(messages)))).all()
        )
    assert [statuses[m] for m in messages] == ["sent", "queued"]


def test_the_sent_event_payload_is_the_documented_model() -> None:
    from chatgate.domain.events import MessageStatusData
    from chatgate.services.send_store import MessageRow, SentRecord, sent_status_data

    message = MessageRow("msg_1", "ten_1", "int_1", "cnv_1", None, "queued", "hi", [], [], None, None, "c1")
    record = SentRecord("ten_1", message, "site-1", "webhook")
    expected = MessageStatusData(
        message_id="msg_1",
        integration_id="int_1",
        provider="webhook",
        conversation_id="cnv_1",
        status="sent",
        previous_status="queued",
        provider_message_id="site-1",
    ).model_dump(mode="json")
    assert sent_status_data(record) == expected
    assert list(sent_status_data(record)) == list(expected)


async def test_a_bucket_line_releases_in_order_within_budget_and_is_bounded() -> None:
    from chatgate.services.send_pacing import SendPacer

    limiter = MemoryRateLimiter()
    pacer = SendPacer(limiter, max_waiting=100, max_wait=0.5)
    limit = within_budget(paced(20))  # about 19 per second: a line of 0.5 s holds 9
    released: list[tuple[int, float]] = []

    def resume(n: int) -> Callable[[], Any]:
        async def run() -> None:
            released.append((n, time.monotonic()))

        return run

    assert (await limiter.hit("k", limit)).allowed  # the bucket's token for now is spent
    accepted = [n for n in range(20) if pacer.wait("k", limit, resume(n))]
    assert accepted == list(range(9))  # the rest would wait too long: the caller reschedules them
    assert pacer.backlog_seconds("k") == pytest.approx(9 / limit.rate)
    await eventually(lambda: len(released) == 9, timeout=5)
    assert [n for n, _ in released] == accepted  # first come, first sent
    assert busiest([t for _, t in released]) <= 20
    await eventually(lambda: not pacer.has_line("k"), timeout=1)
    assert pacer.waiting == 0
    assert pacer.wait("k", limit, resume(99))
    await pacer.aclose()  # stops the line; the job keeps its lease and comes back after it
    assert pacer.waiting == 0


async def test_a_429_pauses_the_sends_already_waiting_in_the_buckets_line(
    settings_factory: Callable[..., Settings], receiver: Receiver
) -> None:
    arrivals: list[float] = []

    class Timed(list[dict[str, Any]]):
        def append(self, request: dict[str, Any]) -> None:
            arrivals.append(time.monotonic())
            super().append(request)

    receiver.requests = Timed()
    receiver.responses.append((429, {"Retry-After": "2"}))
    async with running_api(settings_factory(run_workers_in_api=False)) as api:
        tenant = await api.tenant()
        response = await api.client.post(
            "/v1/integrations",
            json={
                "kind": "webhook",
                "name": "limited site",
                "config": {"outbound_url": receiver.url, "rate_limit_per_second": 5},
                "credentials": {"inbound_secret": INBOUND_SECRET, "outbound_secret": OUTBOUND_SECRET},
            },
            headers=tenant.key_headers,
        )
        assert response.status_code == 201, response.text
        site = response.json()
        ids = [
            (
                await api.container.sending.accept(
                    tenant.id, SendRequest(integration_id=site["id"], to="a", text=f"p{n}"), None
                )
            ).message.id
            for n in range(6)
        ]
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(api.container, stop))
        try:
            sent = (
                select(func.count()).select_from(Message).where(Message.id.in_(ids), Message.status == "sent")
            )
            await eventually(lambda: _is(api, sent, 6), timeout=20)
        finally:
            stop.set()
            await workers
    limited_at = arrivals[0]  # the first request got the 429
    assert not [t for t in arrivals[1:] if t < limited_at + 1.95], "a waiting send went during the pause"
    texts = [b["text"] for b in receiver.bodies()]
    assert sorted(texts) == sorted([texts[0], *(f"p{n}" for n in range(6))])  # only the 429'd one twice
