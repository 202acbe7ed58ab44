"""Helpers for tests that drive the pipeline through the webhook provider."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import select

from chatgate.delivery import signing
from chatgate.domain.ids import inbound_job_id
from chatgate.store.models import RawEvent
from chatgate.workers.queue import QueueItem
from tests.conftest import Api, TenantHandle, unique

INBOUND_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OUTBOUND_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@dataclass
class Receiver:
    """A stand-in for a tenant's site: a real HTTP server on 127.0.0.1 that records what it gets."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    responses: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # consumed first-in first-out
    delay: float = 0.0

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]


async def start_receiver() -> tuple[Receiver, web.AppRunner]:
    receiver = Receiver(url="")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        receiver.requests.append({"headers": dict(request.headers), "body": body, "path": request.path})
        site_id = f"site-{len(receiver.requests)}"  # before any await: unique per request
        if receiver.delay:
            await asyncio.sleep(receiver.delay)
        if receiver.responses:
            status, headers = receiver.responses.pop(0)
            return web.json_response({"error": "scripted"}, status=status, headers=headers)
        return web.json_response({"message_id": site_id})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock)
    await site.start()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    return receiver, runner


async def webhook_integration(
    api: Api, tenant: TenantHandle, outbound_url: str = "http://127.0.0.1:9/none"
) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/integrations",
        json={
            "kind": "webhook",
            "name": unique("site "),
            "config": {"outbound_url": outbound_url},
            "credentials": {"inbound_secret": INBOUND_SECRET, "outbound_secret": OUTBOUND_SECRET},
        },
        headers=tenant.key_headers,
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def message_payload(
    text: str, *, message_id: str, chat: str = "chat-1", sender: str = "user-1", **extra: Any
) -> dict[str, Any]:
    return {
        "type": "message.received",
        "message": {"id": message_id, "text": text, **extra},
        "from": {"id": sender, "name": "Alice Example", "username": "alice"},
        "conversation": {"id": chat, "kind": "private", "title": "Alice"},
    }


async def post_inbound(
    api: Api,
    integration: dict[str, Any],
    payload: dict[str, Any] | bytes,
    *,
    event_id: str,
    secret: str = INBOUND_SECRET,
) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = signing.headers(secret, event_id, int(time.time()), body)
    headers["content-type"] = "application/json"
    return await api.client.post(integration["inbound_path"], content=body, headers=headers)


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll until `check` returns something truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {last!r})")


async def receive_and_process(api: Api, tenant: TenantHandle, count: int) -> None:
    """`count` signed messages posted to a new webhook integration of the tenant, and their
    inbound jobs processed as one batch (no workers needed)."""
    integration = await webhook_integration(api, tenant)
    for n in range(count):
        payload = message_payload(f"message {n}", message_id=f"m{n}")
        assert (await post_inbound(api, integration, payload, event_id=f"e{n}")).status_code == 200
    await api.container.inbound_processor.handle_batch(await inbound_items(api, tenant))


async def inbound_items(api: Api, tenant: TenantHandle) -> list[QueueItem]:
    """The queue items of the tenant's raw events still pending, in arrival order, as the ingest
    published them: their inbound jobs' ids (the jobs are made when a worker takes them up)."""
    async with api.container.db.sessions() as session:
        pending = (
            await session.execute(
                select(RawEvent.id)
                .where(RawEvent.tenant_id == tenant.id, RawEvent.status == "pending")
                .order_by(RawEvent.id)
            )
        ).scalars()
        return [QueueItem(inbound_job_id(raw_id), tenant.id) for raw_id in pending]


async def subscribe(api: Api, tenant: TenantHandle, receiver: Receiver, **body: Any) -> dict[str, Any]:
    """A tenant webhook endpoint delivering to `receiver` (every event type unless told)."""
    response = await api.client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url + "/" + unique("ep"), **body},
        headers=tenant.key_headers,
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def ingest_empty_events(api: Api, tenant: TenantHandle, integration_id: str, count: int) -> list[str]:
    """`count` raw events (`{}`) stored by the ingest itself, as new; their raw ids in arrival order."""
    tag = unique("e")
    for n in range(count):
        assert await api.container.ingest.submit(
            tenant_id=tenant.id,
            integration_id=integration_id,
            kind="webhook",
            provider_event_id=f"{tag}-{n}",
            headers={},
            body=b"{}",
        )
    async with api.container.db.sessions() as session:
        ids = (
            await session.execute(
                select(RawEvent.id).where(RawEvent.provider_event_id.like(f"{tag}-%")).order_by(RawEvent.id)
            )
        ).scalars()
        return list(ids)
