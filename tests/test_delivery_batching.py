"""The batched delivery path: claims and outcomes that arrive together share one transaction
of a few plain statements; nothing about a delivery's result may change because of it.

The tests drive `DeliveryWorker._turn` (one group commit) directly, on every database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from chatgate.delivery.http import HttpResult
from chatgate.services.inbound_processor import LeaseLost
from chatgate.services.webhook_delivery import DeliveryWorker, _Attempted, _Loaded
from chatgate.store.models import Job, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.conftest import Api, TenantHandle
from tests.webhook_helpers import (
    Receiver,
    inbound_items,
    message_payload,
    post_inbound,
    receive_and_process,
    subscribe,
    webhook_integration,
)


async def _deliver_jobs(api: Api, receiver: Receiver, count: int) -> tuple[TenantHandle, str, list[str]]:
    """A tenant with one endpoint and `count` inbound messages, processed: (tenant, endpoint
    id, the ids of the delivery jobs, oldest first)."""
    tenant = await api.tenant()
    endpoint_id = (await subscribe(api, tenant, receiver, event_types=["message.received"]))["id"]
    await receive_and_process(api, tenant, count)
    async with api.container.db.sessions() as session:
        jobs = (
            await session.execute(
                select(Job.id).where(Job.tenant_id == tenant.id, Job.kind == "deliver").order_by(Job.id)
            )
        ).scalars()
        job_ids = list(jobs)
    assert len(job_ids) == count
    return tenant, endpoint_id, job_ids


async def _claim(worker: DeliveryWorker, job_ids: list[str]) -> list[_Loaded]:
    results = await worker._turn(list(job_ids))
    assert all(isinstance(r, _Loaded) for r in results), results
    return [r for r in results if isinstance(r, _Loaded)]


def _answered(loaded: _Loaded, status: int, at_offset: float = 0.0) -> _Attempted:
    """An attempt's outcome as the worker makes it, with the answer given here."""
    assert loaded.delivery is not None
    assert loaded.endpoint is not None
    assert loaded.event is not None
    attempted_at = loaded.event.created_at + timedelta(seconds=at_offset)
    result = HttpResult(status=status, headers={}, body=b"{}", elapsed=0.01)
    return _Attempted(loaded.job, loaded.delivery.id, loaded.endpoint, attempted_at, {}, result, None, 0.01)


async def _rows(api: Api, query: Any) -> list[Any]:
    async with api.container.db.sessions() as session:
        return list((await session.execute(query)).all())


@contextmanager
def _statements(api: Api) -> Iterator[list[str]]:
    """The SQL statements the application runs meanwhile (not BEGIN or COMMIT)."""
    seen: list[str] = []
    engine = api.container.db.engine.sync_engine

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_a_job_whose_lease_was_lost_is_reported_and_the_others_are_recorded(
    quiet: Api, receiver: Receiver
) -> None:
    api = quiet
    worker = api.container.delivery_worker
    _, _, job_ids = await _deliver_jobs(api, receiver, 3)
    loaded = await _claim(worker, job_ids)
    outcomes = [await worker._attempt(one) for one in loaded]
    async with api.container.db.transaction() as session:  # another worker took the second one over
        await session.execute(update(Job).where(Job.id == job_ids[1]).values(leased_by="someone-else"))
    results = await worker._turn(list(outcomes))
    assert results[0] is None
    assert isinstance(results[1], LeaseLost)
    assert results[2] is None
    delivery_ids = [one.delivery.id for one in loaded if one.delivery is not None]
    statuses = dict(
        await _rows(
            api,
            select(WebhookDelivery.id, WebhookDelivery.status).where(WebhookDelivery.id.in_(delivery_ids)),
        )
    )
    assert [statuses[d] for d in delivery_ids] == ["succeeded", "pending", "succeeded"]
    attempts = dict(
        await _rows(
            api,
            select(WebhookAttempt.delivery_id, func.count())
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .group_by(WebhookAttempt.delivery_id),
        )
    )
    assert [attempts.get(d, 0) for d in delivery_ids] == [1, 0, 1]
    jobs = dict(await _rows(api, select(Job.id, Job.status).where(Job.id.in_(job_ids))))
    assert [jobs[j] for j in job_ids] == ["done", "running", "done"]  # the other worker's job untouched


async def test_a_turn_runs_a_bounded_number_of_statements(quiet: Api, receiver: Receiver) -> None:
    api = quiet
    worker = api.container.delivery_worker
    _, _, job_ids = await _deliver_jobs(api, receiver, 12)
    first, second = job_ids[:6], job_ids[6:]
    with _statements(api) as claiming:
        loaded = await _claim(worker, first)
    assert len(claiming) == 2  # claim, read
    outcomes = [await worker._attempt(one) for one in loaded]
    with _statements(api) as mixed:
        results = await worker._turn([*outcomes, *second])
    # claim, read (claims and outcomes), deliveries, attempts, jobs: whatever the batch size
    assert len(mixed) == 5, mixed
    assert results[:6] == [None] * 6
    assert all(isinstance(r, _Loaded) for r in results[6:])


async def test_a_job_queued_twice_in_one_turn_is_delivered_once(quiet: Api, receiver: Receiver) -> None:
    api = quiet
    worker = api.container.delivery_worker
    _, _, job_ids = await _deliver_jobs(api, receiver, 1)
    first, again = await worker._turn([job_ids[0], job_ids[0]])
    assert isinstance(first, _Loaded)
    assert again is None
    outcome = await worker._attempt(first)
    claimed_again, recorded = await worker._turn([job_ids[0], outcome])
    assert claimed_again is None  # the turn records it first: finished, not claimable
    assert recorded is None


async def test_failing_since_follows_the_batch_in_order(quiet: Api, receiver: Receiver) -> None:
    api = quiet
    worker = api.container.delivery_worker
    _, endpoint_id, job_ids = await _deliver_jobs(api, receiver, 4)
    failing_since = select(WebhookEndpoint.failing_since).where(WebhookEndpoint.id == endpoint_id)

    a, b = await _claim(worker, job_ids[:2])
    assert await worker._turn([_answered(a, 500), _answered(b, 200, 1.0)]) == [None, None]
    assert (await _rows(api, failing_since))[0][0] is None  # a later success clears it

    c, d = await _claim(worker, job_ids[2:])
    failed = _answered(d, 503, 2.0)
    assert await worker._turn([_answered(c, 200, 1.0), failed]) == [None, None]
    assert (await _rows(api, failing_since))[0][0] == failed.attempted_at
    retried = dict(
        await _rows(
            api,
            select(WebhookDelivery.id, WebhookDelivery.status).where(
                WebhookDelivery.id.in_([c.job.subject_id, d.job.subject_id])
            ),
        )
    )
    assert retried == {c.job.subject_id: "succeeded", d.job.subject_id: "failed"}
    job = (await _rows(api, select(Job.status, Job.attempts).where(Job.id == d.job.id)))[0]
    assert tuple(job) == ("pending", 0)  # a failed answer is retried; its schedule counts attempts


async def test_claims_and_outcomes_that_fail_together_are_retried_apart(
    quiet: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = quiet
    worker = api.container.delivery_worker
    _, _, job_ids = await _deliver_jobs(api, receiver, 2)
    (first,) = await _claim(worker, job_ids[:1])
    outcome = await worker._attempt(first)
    together = worker._claim_read_record

    def fails_when_mixed(session: Any, params: dict[str, Any], outcomes: list[Any]) -> Any:
        if params["b_claims"] and outcomes:
            raise RuntimeError("a statement of the mixed turn failed")
        return together(session, params, outcomes)

    monkeypatch.setattr(worker, "_claim_read_record", fails_when_mixed)
    recorded, claimed = await worker._turn([outcome, job_ids[1]])
    assert recorded is None
    assert isinstance(claimed, _Loaded)
    statuses = dict(await _rows(api, select(Job.id, Job.status).where(Job.id.in_(job_ids))))
    assert statuses == {job_ids[0]: "done", job_ids[1]: "running"}


async def test_the_queue_depth_gauge_counts_open_deliveries_per_endpoint(
    quiet: Api, receiver: Receiver
) -> None:
    api = quiet
    worker = api.container.delivery_worker
    _, endpoint_id, job_ids = await _deliver_jobs(api, receiver, 3)
    (first,) = await _claim(worker, job_ids[:1])
    assert await worker._turn([_answered(first, 200)]) == [None]  # one delivered: 2 still open
    assert await worker.refresh_depth() == 2
    gauge = api.container.registry.get_sample_value("webhook_deliveries_open", {"endpoint": endpoint_id})
    assert gauge == 2


async def test_a_batch_with_an_event_that_fails_processes_the_others_and_counts_the_attempt(
    quiet: Api, receiver: Receiver
) -> None:
    """A status report for a send not yet committed fails its batch (it is retried later):
    the batch rolls back, its events go one by one, and the failing one's attempt counts."""
    api = quiet
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    status = {"type": "message.status", "message_id": "not-sent-yet", "status": "delivered"}
    payloads = [message_payload("first", message_id="m1"), status, message_payload("third", message_id="m3")]
    for n, payload in enumerate(payloads):
        assert (await post_inbound(api, integration, payload, event_id=f"s{n}")).status_code == 200
    items = await inbound_items(api, tenant)
    jobs = [(item.job_id, None) for item in items]
    await api.container.inbound_processor.handle_batch(items)
    rows = dict(
        await _rows(api, select(Job.id, Job.status).where(Job.id.in_([job_id for job_id, _ in jobs])))
    )
    assert [rows[job_id] for job_id, _ in jobs] == ["done", "pending", "done"]
    failed = (
        await _rows(api, select(Job.attempts, Job.run_after, Job.last_error).where(Job.id == jobs[1][0]))
    )[0]
    assert failed.attempts == 1  # counted, though the batch's own claim rolled back
    assert failed.run_after > api.container.clock()  # with backoff
    assert failed.last_error == "no outbound message with provider id not-sent-yet (yet)"
    conversations = await api.client.get("/v1/conversations", headers=tenant.key_headers)
    assert conversations.status_code == 200
    (conversation,) = conversations.json()["data"]
    messages = await api.client.get(
        f"/v1/conversations/{conversation['id']}/messages", headers=tenant.key_headers
    )
    assert sorted(m["text"] for m in messages.json()["data"]) == ["first", "third"]
