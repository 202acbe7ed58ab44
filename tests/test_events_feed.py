"""The pull API over the tenant event log, on every database: pages, filters, long polling,
tenant isolation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI

from chatgate.api.routes import events, stream
from tests.conftest import Api, TenantHandle, unique
from tests.webhook_helpers import eventually, message_payload, post_inbound, webhook_integration


def ensure_event_routes(app: FastAPI) -> None:
    """Include the events and stream routers unless app.py already does (until the lead wires them)."""
    paths = app.openapi()["paths"]
    added = False
    if "/v1/events" not in paths:
        app.include_router(events.router)
        added = True
    if "/v1/stream" not in paths:
        app.include_router(stream.router)
        added = True
    if added:
        app.openapi_schema = None  # cached without the new routes


async def pull(api: Api, tenant: TenantHandle, **params: Any) -> dict[str, Any]:
    ensure_event_routes(api.app)
    response = await api.client.get("/v1/events", params=params, headers=tenant.key_headers, timeout=40)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def all_events(api: Api, tenant: TenantHandle, **params: Any) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await pull(api, tenant, limit=500, **params))["data"]
    return data


async def receive_messages(
    api: Api, tenant: TenantHandle, integration: dict[str, Any], texts: list[str], chat: str = "chat-1"
) -> None:
    """Post inbound messages one by one, each once the previous is a `message.received` event
    (workers may process concurrent raw events in any order)."""
    for text in texts:
        before = len(await all_events(api, tenant, types="message.received"))
        message_id = unique("m-")
        payload = message_payload(text, message_id=message_id, chat=chat)
        response = await post_inbound(api, integration, payload, event_id=f"evt-{message_id}")
        assert response.status_code == 200, response.text

        async def arrived(before: int = before) -> bool:
            return len(await all_events(api, tenant, types="message.received")) == before + 1

        await eventually(arrived)


async def test_pages_follow_next_after_in_sequence_order(api: Api) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    await receive_messages(api, tenant, integration, ["one", "two", "three"])

    everything = await all_events(api, tenant)
    # The first message also creates the contact and the conversation.
    assert [e["type"] for e in everything] == [
        "contact.updated",
        "conversation.created",
        "message.received",
        "message.received",
        "message.received",
    ]
    assert [e["sequence"] for e in everything] == [1, 2, 3, 4, 5]
    first = everything[2]
    assert first["id"].startswith("evt_")
    assert first["tenant_id"] == tenant.id
    assert first["version"] == 1
    assert first["integration_id"] == integration["id"]
    assert first["conversation_id"]
    assert first["created_at"].endswith(("Z", "+00:00"))
    assert first["data"]["text"] == "one"

    paged: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await pull(api, tenant, after=after, limit=2)
        assert len(page["data"]) <= 2
        if not page["data"]:
            assert page["next_after"] == after  # the end: keep polling from the same place
            break
        assert page["next_after"] == page["data"][-1]["sequence"]
        paged.extend(page["data"])
        after = page["next_after"]
    assert paged == everything

    tail = await pull(api, tenant, after=3)
    assert [e["data"]["text"] for e in tail["data"]] == ["two", "three"]


async def test_type_and_integration_filters(api: Api) -> None:
    tenant = await api.tenant()
    first = await webhook_integration(api, tenant)
    second = await webhook_integration(api, tenant)
    await receive_messages(api, tenant, first, ["to first"])
    await receive_messages(api, tenant, second, ["to second"])

    received = await all_events(api, tenant, types="message.received")
    assert [e["data"]["text"] for e in received] == ["to first", "to second"]
    two_types = await all_events(api, tenant, types="message.received, conversation.created")
    assert [e["type"] for e in two_types] == ["conversation.created", "message.received"] * 2

    of_second = await all_events(api, tenant, integration_id=second["id"])
    assert {e["integration_id"] for e in of_second} == {second["id"]}
    assert [e["type"] for e in of_second] == ["contact.updated", "conversation.created", "message.received"]
    both = await pull(api, tenant, integration_id=second["id"], types="message.received")
    assert [e["data"]["text"] for e in both["data"]] == ["to second"]
    assert both["next_after"] == both["data"][0]["sequence"]

    nothing = await pull(api, tenant, types="integration.status_changed", after=2)
    assert nothing == {"data": [], "next_after": 2}


async def test_bad_query_is_a_clear_422(api: Api) -> None:
    tenant = await api.tenant()
    ensure_event_routes(api.app)
    bad = await api.client.get(
        "/v1/events", params={"types": "message.received,message.recieved"}, headers=tenant.key_headers
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "'message.recieved'" in bad.json()["detail"]
    for params in ({"limit": 0}, {"limit": 501}, {"after": -1}, {"wait": 31}, {"wait": -1}):
        response = await api.client.get("/v1/events", params=params, headers=tenant.key_headers)
        assert response.status_code == 422, (params, response.text)
        assert next(iter(params)) in response.json()["detail"]


async def test_read_permission_is_required(api: Api) -> None:
    tenant = await api.tenant()
    ensure_event_routes(api.app)
    assert (await api.client.get("/v1/events")).status_code == 401
    created = await api.client.post(
        "/v1/api-keys", json={"name": "sender", "scopes": ["send"]}, headers=tenant.key_headers
    )
    assert created.status_code == 201, created.text
    send_only = {"X-API-Key": created.json()["key"]}
    assert (await api.client.get("/v1/events", headers=send_only)).status_code == 403


async def test_another_tenants_events_never_appear(api: Api) -> None:
    mine, theirs = await api.tenant(), await api.tenant()
    my_integration = await webhook_integration(api, mine)
    their_integration = await webhook_integration(api, theirs)
    await receive_messages(api, mine, my_integration, ["mine"])
    await receive_messages(api, theirs, their_integration, ["theirs", "theirs again"])

    my_events = await all_events(api, mine)
    assert {e["tenant_id"] for e in my_events} == {mine.id}
    assert [e["sequence"] for e in my_events] == [1, 2, 3]  # numbered per tenant
    assert [e["data"]["text"] for e in my_events if e["type"] == "message.received"] == ["mine"]
    # Naming the other tenant's integration finds nothing, rather than their events.
    assert await all_events(api, mine, integration_id=their_integration["id"]) == []
    # A long poll past my own log does not wake for their events.
    started = time.monotonic()
    waiting = asyncio.create_task(pull(api, mine, after=3, wait=1))
    await asyncio.sleep(0.2)
    await receive_messages(api, theirs, their_integration, ["not for you"])
    assert (await waiting)["data"] == []
    assert time.monotonic() - started >= 0.9


async def test_long_poll_returns_when_an_event_arrives(api: Api) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    await receive_messages(api, tenant, integration, ["before"])
    after = (await pull(api, tenant))["next_after"]
    assert after == 3

    # Events already there: no waiting at all.
    started = time.monotonic()
    assert len((await pull(api, tenant, after=0, wait=5))["data"]) == 3
    assert time.monotonic() - started < 1.0

    waiting = asyncio.create_task(pull(api, tenant, after=after, wait=5))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    posted = time.monotonic()
    message_id = unique("m-")
    payload = message_payload("during the wait", message_id=message_id)
    assert (await post_inbound(api, integration, payload, event_id=f"evt-{message_id}")).status_code == 200
    page = await asyncio.wait_for(waiting, 10)
    elapsed = time.monotonic() - posted
    assert [e["data"]["text"] for e in page["data"]] == ["during the wait"]
    assert page["next_after"] == after + 1
    assert elapsed < 2.0, f"the long poll took {elapsed:.2f} s after the event"


async def test_long_poll_with_filters_waits_out_unmatched_events(api: Api) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    started = time.monotonic()
    waiting = asyncio.create_task(pull(api, tenant, types="integration.status_changed", wait=1.5))
    await asyncio.sleep(0.2)
    await receive_messages(api, tenant, integration, ["not the wanted type"])
    page = await waiting
    elapsed = time.monotonic() - started
    assert page == {"data": [], "next_after": 0}
    assert 1.4 <= elapsed < 4.0
