"""The durable pipeline end to end, through the webhook provider, on every database.

Inbound: authenticated, stored once, normalized into contacts, conversations, messages and
events. Outbound: idempotent sends, delivered to the receiving site, statuses forward-only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from chatgate.store.models import Event, RawEvent
from chatgate.store.repositories.jobs import JobStore
from tests.conftest import Api, TenantHandle, unique
from tests.webhook_helpers import (
    OUTBOUND_SECRET,
    Receiver,
    eventually,
    message_payload,
    post_inbound,
    start_receiver,
    webhook_integration,
)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    site, runner = await start_receiver()
    yield site
    await runner.cleanup()


async def count_raw(api: Api, integration_id: str) -> int:
    async with api.container.db.sessions() as session:
        query = select(func.count()).select_from(RawEvent).where(RawEvent.integration_id == integration_id)
        return int((await session.execute(query)).scalar_one())


async def events_of(api: Api, tenant_id: str) -> list[Event]:
    async with api.container.db.sessions() as session:
        query = select(Event).where(Event.tenant_id == tenant_id).order_by(Event.sequence)
        return list((await session.execute(query)).scalars())


async def messages_in(api: Api, tenant: TenantHandle, conversation_id: str) -> list[dict[str, Any]]:
    response = await api.client.get(
        f"/v1/conversations/{conversation_id}/messages", headers=tenant.key_headers
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def only_conversation(api: Api, tenant: TenantHandle) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        data = (await api.client.get("/v1/conversations", headers=tenant.key_headers)).json()["data"]
        return data[0] if data else None

    result: dict[str, Any] = await eventually(find)
    return result


async def test_inbound_message_is_stored_once_and_normalized(api: Api) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    payload = message_payload("hello there", message_id="m-100")
    first = await post_inbound(api, integration, payload, event_id="evt-100")
    assert first.status_code == 200
    assert first.json() == {"ok": True, "duplicate": False}
    again = await post_inbound(api, integration, payload, event_id="evt-100")
    assert again.json() == {"ok": True, "duplicate": True}
    # The provider re-sends the same message under a new delivery id: still one message.
    await post_inbound(api, integration, payload, event_id="evt-100-redelivery")
    assert await count_raw(api, integration["id"]) == 2

    conversation = await only_conversation(api, tenant)
    assert conversation["external_id"] == "chat-1"
    assert conversation["kind"] == "private"
    messages = await eventually(lambda: messages_in(api, tenant, conversation["id"]))
    await eventually(lambda: _raw_statuses_done(api, integration["id"]))
    messages = await messages_in(api, tenant, conversation["id"])
    assert [m["text"] for m in messages] == ["hello there"]
    assert messages[0]["direction"] == "inbound"
    assert messages[0]["provider_message_id"] == "m-100"

    events = await events_of(api, tenant.id)
    types = [e.type for e in events]
    assert types == ["contact.updated", "conversation.created", "message.received"]
    assert [e.sequence for e in events] == [1, 2, 3]
    received = events[-1].data
    assert received["text"] == "hello there"
    assert received["provider"] == "webhook"
    assert received["provider_ids"] == {"message_id": "m-100", "chat_id": "chat-1", "sender_id": "user-1"}
    contact = (
        await api.client.get(f"/v1/contacts/{received['contact_id']}", headers=tenant.key_headers)
    ).json()
    assert contact["display_name"] == "Alice Example"
    integration_now = (
        await api.client.get(f"/v1/integrations/{integration['id']}", headers=tenant.key_headers)
    ).json()
    assert integration_now["counters"]["messages_received"] == 1


async def _raw_statuses_done(api: Api, integration_id: str) -> bool:
    async with api.container.db.sessions() as session:
        statuses = (
            await session.execute(select(RawEvent.status).where(RawEvent.integration_id == integration_id))
        ).scalars()
        values = list(statuses)
    return bool(values) and all(s != "pending" for s in values)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: {**h, "webhook-signature": "v1,AAAA" + h["webhook-signature"][7:]}, "no matching"),
        (lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, "missing"),
        (lambda h: {**h, "webhook-timestamp": "1000000000"}, "too old"),
    ],
)
async def test_forged_inbound_is_401_and_stores_nothing(api: Api, mutate: Any, reason: str) -> None:
    import time

    from chatgate.delivery import signing

    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    body = json.dumps(message_payload("forged", message_id="m-x")).encode()
    headers = signing.headers("whsec_" + "A" * 40, "evt-forged", int(time.time()), body)
    good = signing.headers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "evt-forged", int(time.time()), body)
    for candidate in (headers, mutate(good)):
        response = await api.client.post(integration["inbound_path"], content=body, headers=candidate)
        assert response.status_code == 401, response.text
    assert reason in response.json()["detail"]
    assert await count_raw(api, integration["id"]) == 0
    metrics = (await api.client.get("/metrics")).text
    assert 'inbound_auth_rejected_total{kind="webhook"}' in metrics


async def test_flipped_byte_is_rejected(api: Api) -> None:
    import time

    from chatgate.delivery import signing

    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    body = json.dumps(message_payload("original", message_id="m-y")).encode()
    headers = signing.headers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "evt-flip", int(time.time()), body)
    tampered = body.replace(b"original", b"origina1")
    response = await api.client.post(integration["inbound_path"], content=tampered, headers=headers)
    assert response.status_code == 401
    assert await count_raw(api, integration["id"]) == 0


async def test_unknown_integration_is_404(api: Api) -> None:
    response = await api.client.post("/in/webhook/not-a-real-id", content=b"{}")
    assert response.status_code == 404
    assert (await api.client.post("/in/fax/whatever", content=b"{}")).status_code == 404


async def test_unparseable_event_is_kept_and_replayable(api: Api) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    response = await post_inbound(
        api, integration, b'{"type": "message.received", "message": {}}', event_id="bad-1"
    )
    assert response.status_code == 200  # stored: acknowledged, never lost

    async def failed() -> list[dict[str, Any]]:
        page = await api.client.get("/v1/raw-events?status=parse_failed", headers=tenant.key_headers)
        data: list[dict[str, Any]] = page.json()["data"]
        return data

    rows = await eventually(failed)
    assert "'message.id' is required" in rows[0]["error"]
    detail = (await api.client.get(f"/v1/raw-events/{rows[0]['id']}", headers=tenant.key_headers)).json()
    assert detail["body"].startswith('{"type": "message.received"')
    replay = await api.client.post(f"/v1/raw-events/{rows[0]['id']}/replay", headers=tenant.key_headers)
    assert replay.status_code == 202
    await eventually(failed)  # still unparseable: replaying is safe and says so again


async def test_send_is_idempotent_and_reaches_the_site(api: Api, receiver: Receiver) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant, receiver.url + "/" + unique("t"))
    body = {"integration_id": integration["id"], "to": "customer-7", "text": "your order shipped"}
    key = unique("idem-")
    first = await api.client.post(
        "/v1/messages", json=body, headers={**tenant.key_headers, "Idempotency-Key": key}
    )
    assert first.status_code == 202, first.text
    message = first.json()["message"]
    assert message["status"] == "queued"
    second = await api.client.post(
        "/v1/messages", json=body, headers={**tenant.key_headers, "Idempotency-Key": key}
    )
    assert second.status_code == 202
    assert second.json()["message"]["id"] == message["id"]
    assert second.json()["replayed"] is True
    assert second.headers["idempotent-replayed"] == "true"
    other = await api.client.post(
        "/v1/messages",
        json={**body, "text": "something else"},
        headers={**tenant.key_headers, "Idempotency-Key": key},
    )
    assert other.status_code == 409
    assert "different request" in other.json()["detail"]

    async def sent() -> dict[str, Any] | None:
        current = (await api.client.get(f"/v1/messages/{message['id']}", headers=tenant.key_headers)).json()
        return current if current["status"] == "sent" else None

    done = await eventually(sent)
    mine = [r for r in receiver.requests if json.loads(r["body"]).get("id") == message["id"]]
    assert len(mine) == 1
    request = mine[0]
    # The site verifies our signature with the reference library.
    verified = Webhook(OUTBOUND_SECRET).verify(request["body"], request["headers"])
    assert verified["text"] == "your order shipped"
    assert verified["conversation"] == {"id": "customer-7"}
    assert done["provider_message_id"].startswith("site-")
    events = await events_of(api, tenant.id)
    status_events = [e.data for e in events if e.type == "message.status"]
    assert status_events == [
        {
            "message_id": message["id"],
            "integration_id": integration["id"],
            "provider": "webhook",
            "conversation_id": message["conversation_id"],
            "status": "sent",
            "previous_status": "queued",
            "error_code": None,
            "error_message": None,
            "provider_message_id": done["provider_message_id"],
        }
    ]


async def test_statuses_only_move_forward(api: Api, receiver: Receiver) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant, receiver.url)
    sent = await api.client.post(
        "/v1/messages",
        json={"integration_id": integration["id"], "to": "c-1", "text": "hi"},
        headers=tenant.key_headers,
    )
    message_id = sent.json()["message"]["id"]

    async def provider_id() -> str | None:
        current = (await api.client.get(f"/v1/messages/{message_id}", headers=tenant.key_headers)).json()
        return current["provider_message_id"] if current["status"] == "sent" else None

    site_id = await eventually(provider_id)
    for index, status in enumerate(["read", "delivered", "failed", "sent"]):
        payload = {"type": "message.status", "message_id": site_id, "status": status}
        assert (await post_inbound(api, integration, payload, event_id=f"st-{index}")).status_code == 200

    async def final() -> dict[str, Any] | None:
        await eventually(lambda: _raw_statuses_done(api, integration["id"]))
        current: dict[str, Any] = (
            await api.client.get(f"/v1/messages/{message_id}", headers=tenant.key_headers)
        ).json()
        return current

    current = await final()
    assert current["status"] == "read"
    assert current["failed_at"] is None
    statuses = [e.data["status"] for e in await events_of(api, tenant.id) if e.type == "message.status"]
    assert statuses == ["sent", "read"]


async def test_permanent_failure_keeps_the_reason(api: Api, receiver: Receiver) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant, receiver.url)
    receiver.responses.append((400, {}))
    sent = await api.client.post(
        "/v1/messages",
        json={"integration_id": integration["id"], "to": "c-9", "text": "x"},
        headers=tenant.key_headers,
    )
    message_id = sent.json()["message"]["id"]

    async def failed() -> dict[str, Any] | None:
        current: dict[str, Any] = (
            await api.client.get(f"/v1/messages/{message_id}", headers=tenant.key_headers)
        ).json()
        return current if current["status"] == "failed" else None

    current = await eventually(failed)
    assert current["error_message"] == "the receiving site answered 400"


async def test_send_validation_errors_are_clear(api: Api) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    empty = await api.client.post(
        "/v1/messages", json={"integration_id": integration["id"], "to": "x"}, headers=tenant.key_headers
    )
    assert empty.status_code == 422
    assert "text or at least one attachment" in empty.json()["detail"]
    nowhere = await api.client.post("/v1/messages", json={"text": "hi"}, headers=tenant.key_headers)
    assert nowhere.status_code == 422
    assert "conversation_id" in nowhere.json()["detail"]
    both = await api.client.post(
        "/v1/messages",
        json={"integration_id": integration["id"], "to": "x", "attachments": [{"kind": "image"}]},
        headers=tenant.key_headers,
    )
    assert both.status_code == 422
    assert "exactly one of 'url' or 'media_id'" in both.text
    disabled = await api.client.patch(
        f"/v1/integrations/{integration['id']}", json={"enabled": False}, headers=tenant.key_headers
    )
    assert disabled.status_code == 200
    refused = await api.client.post(
        "/v1/messages",
        json={"integration_id": integration["id"], "to": "x", "text": "hi"},
        headers=tenant.key_headers,
    )
    assert refused.status_code == 409
    assert "is disabled" in refused.json()["detail"]
    statuses = [e.data for e in await events_of(api, tenant.id) if e.type == "integration.status_changed"]
    assert statuses[-1]["status"] == "disabled"
    assert statuses[-1]["previous_status"] == "pending"


async def test_a_status_that_beats_the_send_commit_is_applied_once_the_send_commits(
    api: Api, receiver: Receiver
) -> None:
    """Providers may report `delivered` before our send transaction stored their message id;
    the report waits (retried with backoff) instead of being dropped."""
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant, receiver.url)
    before = len(receiver.requests)
    receiver.delay = 1.5  # the site holds our send open while it already reports on it
    try:
        sent = await api.client.post(
            "/v1/messages",
            json={"integration_id": integration["id"], "to": "c-race", "text": "hi"},
            headers=tenant.key_headers,
        )
        message_id = sent.json()["message"]["id"]
        await eventually(lambda: len(receiver.requests) > before)
        site_id = f"site-{len(receiver.requests)}"
        payload = {"type": "message.status", "message_id": site_id, "status": "delivered"}
        assert (await post_inbound(api, integration, payload, event_id=unique("early"))).status_code == 200
    finally:
        receiver.delay = 0.0

    async def delivered() -> bool:
        current = (await api.client.get(f"/v1/messages/{message_id}", headers=tenant.key_headers)).json()
        return bool(current["status"] == "delivered")

    assert await eventually(delivered, timeout=20)


async def process_as_one_batch(
    api: Api, tenant: TenantHandle, integration: dict[str, Any], bodies: list[dict[str, Any]], tag: str
) -> None:
    """Store `bodies` as raw events and process them in one batch (not the running workers)."""
    await api.container.inbound_processor.handle_batch(
        await stored_unprocessed(api, tenant, integration, bodies, tag)
    )


async def stored_unprocessed(
    api: Api, tenant: TenantHandle, integration: dict[str, Any], bodies: list[dict[str, Any]], tag: str
) -> list[Any]:
    """Store `bodies` as raw events; their queue items, kept from the running workers."""
    from chatgate.workers.queue import QueueItem

    container = api.container
    captured: list[QueueItem] = []
    working_publish = container.ingest.publish

    async def capture(topic: str, items: list[QueueItem]) -> None:
        captured.extend(items)

    container.ingest.publish = capture
    try:
        for index, body in enumerate(bodies):
            stored = await container.ingest.submit(
                tenant_id=tenant.id,
                integration_id=integration["id"],
                kind="webhook",
                provider_event_id=f"{tag}-event-{index}",
                headers={"content-type": "application/json"},
                body=json.dumps(body).encode(),
            )
            assert stored
        await eventually(lambda: len(captured) == len(bodies))  # published by a task after commit
    finally:
        container.ingest.publish = working_publish
    return captured


async def test_a_sqlite_batch_claims_without_a_claim_update_and_leaves_held_jobs_alone(
    sqlite_api: Api,
) -> None:
    """On SQLite the batch's claim and finish share one write transaction, so the claim is a read:
    the jobs go from pending to done (the attempt counted, the worker named) without a `running`
    UPDATE; a job another worker holds is skipped, one whose lease ran out is taken over."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import event, update

    from chatgate.store.models import Job

    api = sqlite_api
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    tag = unique("c")
    bodies = [message_payload(f"m{n}", message_id=f"{tag}-{n}", chat=f"chat-{tag}") for n in range(4)]
    items = await stored_unprocessed(api, tenant, integration, bodies, tag)
    held, expired = items[1].job_id, items[2].job_id
    now = datetime.now(UTC)
    async with api.container.db.transaction() as session:
        # Taken up by another worker: their jobs made (the ingest stores raw events alone), one
        # still held, one whose lease expired.
        await JobStore(session).make_inbound_jobs([held, expired], now)
        for job_id, until in ((held, now + timedelta(minutes=1)), (expired, now - timedelta(seconds=1))):
            await session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status="running", leased_by="other", lease_until=until, attempts=1)
            )
    updates: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith("UPDATE jobs"):
            updates.append(statement)

    engine = api.container.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await api.container.inbound_processor.handle_batch(items)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(updates) == 1, updates  # the finish only
    async with api.container.db.sessions() as session:
        jobs = {
            job.id: job
            for job in (
                await session.execute(select(Job).where(Job.id.in_([i.job_id for i in items])))
            ).scalars()
        }
        raws = {
            raw.provider_event_id: raw.status
            for raw in (
                await session.execute(select(RawEvent).where(RawEvent.provider_event_id.like(f"{tag}-%")))
            ).scalars()
        }
    worker = api.container.inbound_processor.worker_id
    for item in items:
        job = jobs[item.job_id]
        if item.job_id == held:
            assert (job.status, job.leased_by, job.attempts) == ("running", "other", 1)
        else:
            assert (job.status, job.leased_by, job.finished_at is not None) == ("done", worker, True)
            assert job.attempts == (2 if item.job_id == expired else 1)
    assert raws == {f"{tag}-event-{n}": "pending" if n == 1 else "processed" for n in range(4)}


async def test_a_later_batch_changes_the_rows_it_read(api: Api) -> None:
    """A batch reads its contacts, conversations and messages up front; its changes to them (an
    edit, a deletion, a sender's new name, a chat's new title) are saved with the batch."""
    from chatgate.store.models import Contact, Conversation, Message

    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    tag = unique("l")
    chat = f"chat-{tag}"
    await process_as_one_batch(
        api,
        tenant,
        integration,
        [
            message_payload(text, message_id=f"{tag}-{n}", chat=chat)
            for n, text in ((1, "first"), (2, "second"))
        ],
        f"{tag}-a",
    )
    renamed = message_payload("third", message_id=f"{tag}-3", chat=chat)
    renamed["from"]["name"] = "Alice Renamed"
    renamed["conversation"]["title"] = "Alice's new title"
    await process_as_one_batch(
        api,
        tenant,
        integration,
        [
            {**message_payload("first, edited", message_id=f"{tag}-1", chat=chat), "type": "message.edited"},
            {
                "type": "message.deleted",
                "conversation": {"id": chat, "kind": "private"},
                "message_ids": [f"{tag}-2"],
            },
            renamed,
        ],
        f"{tag}-b",
    )
    async with api.container.db.sessions() as session:
        messages = {
            m.provider_message_id: m
            for m in (
                await session.execute(select(Message).where(Message.provider_message_id.like(f"{tag}-%")))
            ).scalars()
        }
        conversation = (
            await session.execute(select(Conversation).where(Conversation.external_id == chat))
        ).scalar_one()
        contact = await session.get(Contact, messages[f"{tag}-3"].contact_id)
    assert messages[f"{tag}-1"].text == "first, edited"
    assert messages[f"{tag}-1"].edited_at is not None
    assert messages[f"{tag}-2"].deleted_at is not None
    assert messages[f"{tag}-2"].text == "second"
    assert conversation.title == "Alice's new title"
    assert contact is not None
    assert contact.display_name == "Alice Renamed"
    assert contact.id == messages[f"{tag}-1"].contact_id  # the same contact, not a second one


async def test_one_batch_with_a_message_its_edit_a_reply_and_a_deletion(api: Api) -> None:
    """Messages of a batch are inserted together at its end: an edit, a reply and a deletion of
    a message received earlier in the same batch must still apply to it."""
    from chatgate.store.models import Message

    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    container = api.container
    tag = unique("b")
    edited = {**message_payload("second", message_id=f"{tag}-1"), "type": "message.edited"}
    deleted = {
        "type": "message.deleted",
        "conversation": {"id": "chat-1", "kind": "private", "title": "Alice"},
        "message_ids": [f"{tag}-3"],
    }
    bodies = [
        message_payload("first", message_id=f"{tag}-1"),
        edited,
        message_payload("a reply", message_id=f"{tag}-2", reply_to=f"{tag}-1"),
        message_payload("soon gone", message_id=f"{tag}-3"),
        deleted,
    ]
    await process_as_one_batch(api, tenant, integration, bodies, tag)

    async with container.db.sessions() as session:
        rows = {
            m.provider_message_id: m
            for m in (
                await session.execute(select(Message).where(Message.provider_message_id.like(f"{tag}-%")))
            ).scalars()
        }
        types = list(
            (
                await session.execute(
                    select(Event.type).where(Event.tenant_id == tenant.id).order_by(Event.sequence)
                )
            ).scalars()
        )
    assert sorted(rows) == [f"{tag}-1", f"{tag}-2", f"{tag}-3"]
    assert rows[f"{tag}-1"].text == "second"
    assert rows[f"{tag}-1"].edited_at is not None
    assert rows[f"{tag}-2"].reply_to_message_id == rows[f"{tag}-1"].id
    assert rows[f"{tag}-3"].deleted_at is not None
    assert rows[f"{tag}-1"].deleted_at is None
    assert types.count("message.received") == 3
    assert types.count("message.edited") == 1
    assert types.count("message.deleted") == 1
