"""Helpers for the WhatsApp end-to-end tests: the gateway served on a real port, the provider
sandboxes beside it, signed Meta webhooks, and small waits on the database and the API."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select

from chatgate.store.models import Event, Message, RawEvent
from tests.asgi_server import serve_asgi
from tests.conftest import Api, TenantHandle, unique
from tests.contracts import WHATSAPP_WEBHOOKS
from tests.webhook_helpers import Receiver, eventually

# --- the gateway on a real port -----------------------------------------------------------------


def reserve_port() -> tuple[socket.socket, str]:
    """A listening-ready socket on 127.0.0.1 and its base URL, known before the app starts
    (so CHATGATE_PUBLIC_BASE_URL can name it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def serve_on(app: Any, sock: socket.socket) -> AsyncIterator[None]:
    """Serve an already started app (lifespan off) on `sock` until the block ends."""
    async with serve_asgi(app, sock=sock):
        yield


# --- Meta's webhooks ----------------------------------------------------------------------------


def meta_headers(app_secret: str, body: bytes) -> dict[str, str]:
    """The headers Meta sends with a webhook: `X-Hub-Signature-256` over the raw bytes."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"}


async def post_meta(api: Api, path: str, body: bytes, app_secret: str) -> Any:
    return await api.client.post(path, content=body, headers=meta_headers(app_secret, body))


def fixture_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, case, body) of every recorded WhatsApp webhook fixture."""
    cases = []
    for path in sorted(WHATSAPP_WEBHOOKS.glob("*.json")):
        for name, body in json.loads(path.read_text()).items():
            cases.append((path.stem, name, body))
    return cases


def changes(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field, value) of every change of a webhook body."""
    for entry in body.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value")
            yield str(change.get("field")), value if isinstance(value, dict) else {}


def readdress(
    body: dict[str, Any], phone_number_id: str, tag: str, status_ids: list[str] | None = None
) -> dict[str, Any]:
    """A fixture made ours: every change's `metadata.phone_number_id` is our number, message
    ids are unique to `tag` (the fixtures reuse a handful of wamids, which would dedupe), reaction
    targets follow, and statuses (in order) take the wamids of messages we really sent."""
    result = copy.deepcopy(body)
    statuses = list(status_ids or [])
    for field, value in changes(result):
        metadata = value.get("metadata")
        if isinstance(metadata, dict):
            metadata["phone_number_id"] = phone_number_id
        for index, message in enumerate(value.get("messages") or []):
            message["id"] = f"wamid.{tag}.{index}"
            reaction = message.get("reaction")
            if isinstance(reaction, dict) and reaction.get("message_id"):
                reaction["message_id"] = f"wamid.{tag}.target"
        if field == "messages":
            for status in value.get("statuses") or []:
                if statuses:
                    status["id"] = statuses.pop(0)
    return result


def tracked_statuses(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The message statuses (not call statuses) of a webhook body."""
    return [
        status
        for field, value in changes(body)
        if field == "messages"
        for status in value.get("statuses") or []
    ]


IGNORED_MESSAGE_TYPES = frozenset({"system", "unsupported", "edit", "revoke"})


def expected_message_event(message: dict[str, Any]) -> str | None:
    """Which event a customer's message should produce, judged from the fixture alone."""
    kind = message.get("type")
    content = message.get(kind) if isinstance(kind, str) else None
    if kind in IGNORED_MESSAGE_TYPES:
        return None
    if kind == "interactive" and (
        not isinstance(content, dict)
        or content.get("type") not in ("button_reply", "list_reply", "nfm_reply")
    ):
        return None  # an error report, or a calling-permission answer
    if kind == "reaction":
        return "message.reaction"
    return "message.received"


# --- the gateway's API ------------------------------------------------------------------------


async def connect(api: Api, tenant: TenantHandle, body: dict[str, Any]) -> Any:
    return await api.client.post(
        "/v1/integrations", json={"name": unique("wa "), **body}, headers=tenant.key_headers
    )


async def endpoint(api: Api, tenant: TenantHandle, receiver: Receiver) -> dict[str, Any]:
    """A tenant webhook endpoint pointing at `receiver` (its own path, to tell tenants apart)."""
    response = await api.client.post(
        "/v1/webhook-endpoints",
        json={"url": f"{receiver.url}/{tenant.slug}"},
        headers=tenant.key_headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def delivered(receiver: Receiver, tenant: TenantHandle) -> list[dict[str, Any]]:
    """Event envelopes the tenant's endpoint received, in arrival order."""
    path = f"/hook/{tenant.slug}"
    return [json.loads(r["body"]) for r in receiver.requests if r["path"] == path]


async def raw_events(api: Api, integration_id: str) -> list[RawEvent]:
    async with api.container.db.sessions() as session:
        query = select(RawEvent).where(RawEvent.integration_id == integration_id).order_by(RawEvent.id)
        return list((await session.execute(query)).scalars())


async def raw_settled(api: Api, integration_id: str, count: int) -> list[RawEvent]:
    """Wait until the integration has `count` raw events, none still pending."""

    async def check() -> list[RawEvent] | None:
        rows = await raw_events(api, integration_id)
        if len(rows) == count and all(r.status != "pending" for r in rows):
            return rows
        return None

    rows: list[RawEvent] = await eventually(check)
    return rows


async def events_of(api: Api, tenant_id: str, type_: str | None = None) -> list[Event]:
    async with api.container.db.sessions() as session:
        query = select(Event).where(Event.tenant_id == tenant_id).order_by(Event.sequence)
        found = list((await session.execute(query)).scalars())
    return [e for e in found if type_ is None or e.type == type_]


async def message(api: Api, tenant: TenantHandle, message_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/messages/{message_id}", headers=tenant.key_headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def message_in(api: Api, tenant: TenantHandle, message_id: str, status: str) -> dict[str, Any]:
    """Wait for the message to reach `status`."""

    async def check() -> dict[str, Any] | None:
        current = await message(api, tenant, message_id)
        return current if current["status"] == status else None

    found: dict[str, Any] = await eventually(check)
    return found


async def send(api: Api, tenant: TenantHandle, body: dict[str, Any]) -> Any:
    return await api.client.post("/v1/messages", json=body, headers=tenant.key_headers)


async def queued(api: Api, tenant: TenantHandle, body: dict[str, Any]) -> dict[str, Any]:
    response = await send(api, tenant, body)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()["message"]
    return accepted


async def messages_of(api: Api, integration_id: str, direction: str = "inbound") -> list[Message]:
    """The integration's messages in one direction, oldest first."""
    async with api.container.db.sessions() as session:
        query = (
            select(Message)
            .where(Message.integration_id == integration_id, Message.direction == direction)
            .order_by(Message.created_at, Message.id)
        )
        return list((await session.execute(query)).scalars())
