"""WhatsApp Cloud API end to end: the running gateway (on a real port) and the Graph sandbox.

Everything crosses real HTTP: connects are validated at the sandbox, the sandbox posts signed
webhooks (customer messages, statuses) to `/in/whatsapp/{public_id}`, sends and media go to it,
and the tenant's own webhook endpoint receives the events. Each test uses its own tenant and
number; the window test and the seed test run their own gateway (a movable clock, a setting).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from chatgate.domain.access import Role
from chatgate.sandbox.graph_api import SandboxGraphApi
from chatgate.store.models import Contact, Integration, Message, RawEvent
from tests.asgi_server import serve_asgi
from tests.conftest import Api, TenantHandle, make_settings, running_api, unique
from tests.test_invariants import MovableClock
from tests.webhook_helpers import Receiver, eventually, start_receiver
from tests.whatsapp_helpers import (
    changes,
    connect,
    delivered,
    endpoint,
    events_of,
    expected_message_event,
    fixture_cases,
    message,
    message_in,
    messages_of,
    meta_headers,
    post_meta,
    queued,
    raw_events,
    raw_settled,
    readdress,
    reserve_port,
    send,
    serve_on,
    tracked_statuses,
)

WABA = "102290129340398"
PNG = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(64)


@dataclass
class Env:
    api: Api
    base: str  # the gateway's public base URL (a real port)
    graph: SandboxGraphApi
    graph_base: str
    receiver: Receiver


@dataclass
class Number:
    """A business number at the sandbox, connected to the gateway."""

    integration: dict[str, Any]
    phone_number_id: str
    access_token: str
    app_secret: str

    @property
    def inbound(self) -> str:
        return f"/in/whatsapp/{self.integration['public_id']}"

    @property
    def id(self) -> str:
        return str(self.integration["id"])


def new_number_id() -> str:
    return str(10**14 + secrets.randbelow(9 * 10**14))


def customer() -> str:
    return "1555" + str(secrets.randbelow(10**7)).zfill(7)


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    graph = SandboxGraphApi()
    receiver, runner = await start_receiver()
    tmp = tmp_path_factory.mktemp("wa-e2e")
    try:
        async with serve_asgi(graph.app) as graph_base:
            sock, base = reserve_port()
            settings = make_settings(tmp, None, graph_api_base=graph_base, public_base_url=base)
            async with running_api(settings) as api, serve_on(api.app, sock):
                yield Env(api, base, graph, graph_base, receiver)
    finally:
        await graph.aclose()
        await runner.cleanup()


def add_sandbox_number(graph: SandboxGraphApi, *, app_secret: str | None = None, **settings: Any) -> Number:
    pid = new_number_id()
    token, secret = unique("EAAG-token-"), app_secret or unique("app-secret-")
    graph.add_number(
        pid,
        display_phone_number=f"+1 555-{pid[-7:-4]}-{pid[-4:]}",
        access_token=token,
        app_secret=secret,
        waba_id=WABA,
        status_interval=0.05,
        **settings,
    )
    return Number({}, pid, token, secret)


async def connected(
    api: Api, graph: SandboxGraphApi, tenant: TenantHandle, base: str | None, **settings: Any
) -> Number:
    """A sandbox number connected through the API; with `base`, the sandbox posts its webhooks
    (customer messages, statuses) to the integration's inbound URL there."""
    number = add_sandbox_number(graph, **settings)
    response = await connect(
        api,
        tenant,
        {
            "kind": "whatsapp_cloud",
            "config": {"phone_number_id": number.phone_number_id, "waba_id": WABA},
            "credentials": {"access_token": number.access_token, "app_secret": number.app_secret},
        },
    )
    assert response.status_code == 201, response.text
    number.integration = response.json()
    if base is not None:
        graph.configure(number.phone_number_id, callback_url=f"{base}{number.inbound}")
    return number


async def customer_writes(api: Api, graph: SandboxGraphApi, number: Number, wa_id: str, text: str) -> str:
    """The sandbox delivers a customer's message to us; wait until it is stored as a message."""
    result = await graph.emit_inbound(number.phone_number_id, {"from": wa_id, "type": "text", "text": text})
    assert result["delivery"]["status"] == 200, result["delivery"]
    wamid = str(result["message_id"])

    async def stored() -> bool:
        return any(m.provider_message_id == wamid for m in await messages_of(api, number.id))

    await eventually(stored)
    return wamid


def graph_calls(graph: SandboxGraphApi, number: Number, suffix: str) -> list[Any]:
    return [c for c in graph.calls if c.path.endswith(f"/{number.phone_number_id}/{suffix}")]


# 1. Connect ------------------------------------------------------------------------------------


async def test_connect_is_validated_at_the_sandbox(env: Env) -> None:
    api, graph = env.api, env.graph
    tenant = await api.tenant()
    number = await connected(api, graph, tenant, None)
    created = number.integration
    assert created["kind"] == "whatsapp_cloud"
    assert created["status"] == "active"
    assert created["inbound_path"] == number.inbound
    # The validation really happened at the sandbox, with the token.
    (lookup,) = [c for c in graph.calls if c.path == f"/v23.0/{number.phone_number_id}"]
    assert lookup.authorized is True
    assert lookup.query == {"fields": "display_phone_number,verified_name,quality_rating"}
    assert (
        created["config"]["display_phone_number"]
        == graph.numbers[number.phone_number_id].display_phone_number
    )
    assert created["config"]["verified_name"] == "Sandbox Business"
    # Secrets are masked; the verify token is generated and shown for Meta's dashboard.
    shown = json.dumps(created)
    assert number.access_token not in shown
    assert number.app_secret not in shown
    assert set(created["credentials"]) == {"access_token", "app_secret", "verify_token"}
    assert all(v.startswith("••••") for v in created["credentials"].values())
    assert len(created["config"]["verify_token"]) >= 24
    # A verify token of the operator's choice is kept.
    chosen = add_sandbox_number(graph)
    mine = await connect(
        api,
        tenant,
        {
            "kind": "whatsapp_cloud",
            "config": {"phone_number_id": chosen.phone_number_id, "verify_token": "my-own-verify-token"},
            "credentials": {"access_token": chosen.access_token, "app_secret": chosen.app_secret},
        },
    )
    assert mine.status_code == 201, mine.text
    assert mine.json()["config"]["verify_token"] == "my-own-verify-token"

    before = (await api.client.get("/v1/integrations", headers=tenant.key_headers)).json()["data"]
    fresh = add_sandbox_number(graph)
    bad_token = await connect(
        api,
        tenant,
        {
            "kind": "whatsapp_cloud",
            "config": {"phone_number_id": fresh.phone_number_id},
            "credentials": {"access_token": "EAAG-not-a-real-token", "app_secret": fresh.app_secret},
        },
    )
    assert bad_token.status_code == 422, bad_token.text
    assert "access token" in bad_token.json()["detail"]
    unknown = await connect(
        api,
        tenant,
        {
            "kind": "whatsapp_cloud",
            "config": {"phone_number_id": new_number_id()},
            "credentials": {"access_token": fresh.access_token, "app_secret": fresh.app_secret},
        },
    )
    assert unknown.status_code == 422, unknown.text
    assert "no phone number" in unknown.json()["detail"]
    no_secret = await connect(
        api,
        tenant,
        {
            "kind": "whatsapp_cloud",
            "config": {"phone_number_id": fresh.phone_number_id},
            "credentials": {"access_token": fresh.access_token},
        },
    )
    assert no_secret.status_code == 422
    after = (await api.client.get("/v1/integrations", headers=tenant.key_headers)).json()["data"]
    assert [i["id"] for i in after] == [i["id"] for i in before]  # nothing stored

    twice = {
        "kind": "whatsapp_cloud",
        "config": {"phone_number_id": number.phone_number_id},
        "credentials": {"access_token": number.access_token, "app_secret": number.app_secret},
    }
    again = await connect(api, tenant, twice)
    assert again.status_code == 409
    assert number.id in again.json()["detail"]
    elsewhere = await connect(api, await api.tenant(), twice)
    assert elsewhere.status_code == 409
    assert number.id not in elsewhere.json()["detail"]  # another account's integration is not named


# 2. Handshake ----------------------------------------------------------------------------------


async def test_subscription_handshake(env: Env) -> None:
    api = env.api
    tenant = await api.tenant()
    number = await connected(api, env.graph, tenant, None)
    token = number.integration["config"]["verify_token"]
    # Long enough not to turn up by chance inside a random id of the refusal's body.
    challenge = "1158201444019876"
    ok = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge}
    answer = await api.client.get(number.inbound, params=ok)
    assert answer.status_code == 200
    assert answer.text == challenge
    assert answer.headers["content-type"].startswith("text/plain")
    long_name = await api.client.get(f"/in/whatsapp_cloud/{number.integration['public_id']}", params=ok)
    assert long_name.text == challenge
    for wrong in ({"hub.verify_token": token + "x"}, {"hub.mode": "unsubscribe"}, {"hub.verify_token": ""}):
        refused = await api.client.get(number.inbound, params={**ok, **wrong})
        assert refused.status_code == 403, wrong
        assert challenge not in refused.text
    assert (await api.client.get("/in/whatsapp/nope", params=ok)).status_code == 404


# 3. Every fixture through the gateway ----------------------------------------------------------


async def test_every_fixture_is_stored_normalized_and_delivered_once(env: Env) -> None:
    api, graph = env.api, env.graph
    tenant = await api.tenant()
    await endpoint(api, tenant, env.receiver)
    number = await connected(api, graph, tenant, env.base, auto_status=False)
    wa_id = customer()
    opener = await customer_writes(api, graph, number, wa_id, "hello, I have a question")

    cases = fixture_cases()
    # Status fixtures report on messages we really sent (fresh ones, each still at `sent`).
    wanted = sum(len(tracked_statuses(body)) for _, _, body in cases)
    sent_ids = []
    for index in range(wanted):
        accepted = await queued(
            api, tenant, {"integration_id": number.id, "to": wa_id, "text": f"out {index}"}
        )
        sent_ids.append((await message_in(api, tenant, accepted["id"], "sent"))["provider_message_id"])
    setup = {("message.received", opener)} | {("message.status", wamid, "sent") for wamid in sent_ids}

    expected: list[tuple[str, ...]] = []
    free_ids = list(sent_ids)
    for file, name, fixture in cases:
        take = len(tracked_statuses(fixture))
        body = readdress(fixture, number.phone_number_id, f"{file}.{name}", free_ids[:take])
        free_ids = free_ids[take:]
        raw = json.dumps(body).encode()
        first = await post_meta(api, number.inbound, raw, number.app_secret)
        assert first.status_code == 200, (file, name, first.text)
        assert first.json()["stored"] == 1, (file, name, first.json())
        again = await post_meta(api, number.inbound, raw, number.app_secret)
        assert again.json()["duplicate"] is True, (file, name)
        for field, value in changes(body):
            if field != "messages":
                continue
            for item in value.get("messages") or []:
                kind = expected_message_event(item)
                if kind == "message.received":
                    expected.append((kind, item["id"]))
                elif kind == "message.reaction":
                    expected.append((kind, item["reaction"]["message_id"]))
            expected.extend(  # each of those messages was at `sent`
                ("message.status", status["id"], status["status"])
                for status in value.get("statuses") or []
                if status["status"] in ("delivered", "read", "failed")
            )
    assert not free_ids

    rows = await raw_settled(api, number.id, 1 + len(cases))
    assert [r.status for r in rows if r.status not in ("processed", "ignored")] == []
    ignored = [r for r in rows if r.status == "ignored"]
    assert ignored
    assert all(r.error is None for r in ignored)

    def seen() -> list[tuple[str, ...]]:
        keys: list[tuple[str, ...]] = []
        for event in delivered(env.receiver, tenant):
            data = event["data"]
            if event["type"] == "message.received":
                keys.append((event["type"], data["provider_ids"]["message_id"]))
            elif event["type"] == "message.reaction":
                keys.append((event["type"], data["provider_message_id"]))
            elif event["type"] == "message.status":
                keys.append((event["type"], data["provider_message_id"], data["status"]))
        return [k for k in keys if k not in setup]

    async def all_seen() -> bool:
        return len(seen()) >= len(expected)

    await eventually(all_seen)
    assert sorted(seen()) == sorted(expected)  # each exactly once, nothing for the ignored kinds
    envelopes = delivered(env.receiver, tenant)
    assert len({e["id"] for e in envelopes}) == len(envelopes)
    assert {e["integration_id"] for e in envelopes if e["type"].startswith("message.")} == {number.id}
    # A failed status keeps Meta's code and reason.
    failed = [
        e["data"] for e in envelopes if e["type"] == "message.status" and e["data"]["status"] == "failed"
    ]
    assert [f["error_code"] for f in failed] == ["130472"]
    assert "experiment" in failed[0]["error_message"]


async def test_forged_webhooks_are_refused_and_store_nothing(env: Env) -> None:
    api = env.api
    tenant = await api.tenant()
    number = await connected(api, env.graph, tenant, None)
    (_, _, text) = next(c for c in fixture_cases() if c[:2] == ("message", "text"))
    raw = json.dumps(readdress(text, number.phone_number_id, unique("forged"))).encode()
    flipped = bytearray(raw)
    flipped[raw.index(b"body") + 10] ^= 0x01
    attempts = [
        (bytes(flipped), meta_headers(number.app_secret, raw)),
        (raw, meta_headers("a-wrong-app-secret", raw)),
        (raw, {"content-type": "application/json"}),
        (raw, {**meta_headers(number.app_secret, raw), "x-hub-signature-256": "sha1=abc"}),
    ]
    for body, headers in attempts:
        refused = await api.client.post(number.inbound, content=body, headers=headers)
        assert refused.status_code == 401, refused.text
    assert await raw_events(api, number.id) == []
    accepted = await post_meta(api, number.inbound, raw, number.app_secret)
    assert accepted.status_code == 200
    assert len(await raw_events(api, number.id)) == 1


# 4. Routing by phone_number_id -----------------------------------------------------------------


def text_change(phone_number_id: str, wa_id: str, wamid: str, text: str) -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": f"Customer {wa_id[-4:]}"}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": wamid,
                    "timestamp": str(int(datetime.now(UTC).timestamp())),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        },
    }


async def test_one_apps_webhook_is_routed_by_phone_number_id(env: Env) -> None:
    api, graph = env.api, env.graph
    tenant, other = await api.tenant(), await api.tenant()
    secret = unique("shared-app-secret-")
    first = await connected(api, graph, tenant, None, app_secret=secret)
    second = await connected(api, graph, tenant, None, app_secret=secret)
    foreign = await connected(api, graph, other, None, app_secret=secret)
    ids = {key: f"wamid.route.{key}.{unique('')}" for key in ("first", "second", "foreign")}
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "changes": [
                    text_change(first.phone_number_id, "15550000001", ids["first"], "to the first number"),
                    text_change(second.phone_number_id, "15550000002", ids["second"], "to the second number"),
                    text_change(foreign.phone_number_id, "15550000003", ids["foreign"], "not yours"),
                ],
            }
        ],
    }
    raw = json.dumps(body).encode()
    answer = await post_meta(api, first.inbound, raw, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ok": True, "stored": 2, "duplicate": False, "dropped": 1}

    async def both() -> bool:
        return bool(await messages_of(api, first.id)) and bool(await messages_of(api, second.id))

    await eventually(both)
    assert [(m.provider_message_id, m.text) for m in await messages_of(api, first.id)] == [
        (ids["first"], "to the first number")
    ]
    assert [(m.provider_message_id, m.text) for m in await messages_of(api, second.id)] == [
        (ids["second"], "to the second number")
    ]
    assert await raw_events(api, foreign.id) == []
    async with api.container.db.sessions() as session:
        leaked = await session.scalar(select(Message.id).where(Message.provider_message_id == ids["foreign"]))
        raws = list(
            (await session.execute(select(RawEvent.body).where(RawEvent.tenant_id == tenant.id))).scalars()
        )
    assert leaked is None
    assert raws
    assert all(ids["foreign"].encode() not in r for r in raws)
    # The same batch delivered through the other number's URL stores nothing new.
    replay = await post_meta(api, second.inbound, raw, secret)
    assert replay.json()["stored"] == 0
    assert replay.json()["duplicate"] is True


# 5. Statuses -----------------------------------------------------------------------------------


async def test_statuses_from_the_sandbox_only_move_forward(env: Env) -> None:
    api, graph = env.api, env.graph
    tenant = await api.tenant()
    number = await connected(api, graph, tenant, env.base)
    wa_id = customer()
    await customer_writes(api, graph, number, wa_id, "hi")
    # The number as people write it names the customer's conversation (the wa_id, digits only).
    spelled = f"+{wa_id[0]} {wa_id[1:4]}-{wa_id[4:7]}-{wa_id[7:]}"
    accepted = await queued(
        api, tenant, {"integration_id": number.id, "to": spelled, "text": "your order shipped"}
    )
    (inbound,) = await messages_of(api, number.id)
    assert accepted["conversation_id"] == inbound.conversation_id
    read = await message_in(api, tenant, accepted["id"], "read")
    (sent,) = [m for m in graph.messages if m.id == read["provider_message_id"]]
    assert sent.body["text"] == {"body": "your order shipped"}
    assert sent.wa_id == wa_id
    assert read["delivered_at"] is not None
    assert read["sent_at"] is not None

    def history(message_id: str) -> Any:
        async def statuses() -> list[str]:
            return [
                e.data["status"]
                for e in await events_of(api, tenant.id, "message.status")
                if e.data["message_id"] == message_id
            ]

        return statuses()

    assert await history(accepted["id"]) == ["sent", "delivered", "read"]

    # Out of order: `read` overtakes `delivered`; the late `delivered` does not move it back.
    graph.configure(number.phone_number_id, auto_status=False)
    second = await queued(api, tenant, {"integration_id": number.id, "to": wa_id, "text": "and another"})
    wamid = (await message_in(api, tenant, second["id"], "sent"))["provider_message_id"]
    before = len(await raw_events(api, number.id))
    late = await graph.emit_statuses(number.phone_number_id, wamid, ["read", "delivered"])
    assert [d.status for d in late] == [200, 200]
    await raw_settled(api, number.id, before + 2)
    current = await message(api, tenant, second["id"])
    assert current["status"] == "read"
    assert current["delivered_at"] is None
    assert await history(second["id"]) == ["sent", "read"]

    third = await queued(api, tenant, {"integration_id": number.id, "to": wa_id, "text": "last one"})
    wamid = (await message_in(api, tenant, third["id"], "sent"))["provider_message_id"]
    error = {
        "code": 131049,
        "title": "This message was not delivered to maintain healthy ecosystem engagement.",
        "details": "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    }
    await graph.emit_statuses(number.phone_number_id, wamid, ["failed"], error=error)
    failed = await message_in(api, tenant, third["id"], "failed")
    assert failed["error_code"] == "131049"
    assert error["title"] in failed["error_message"]
    assert "healthy ecosystem engagement, the message failed" in failed["error_message"]


# 6. The 24-hour window -------------------------------------------------------------------------


async def test_the_24_hour_window_needs_a_template(env: Env, tmp_path: Path) -> None:
    clock = MovableClock()
    graph = SandboxGraphApi(clock=lambda: clock().timestamp())
    try:
        async with serve_asgi(graph.app) as graph_base:
            sock, base = reserve_port()
            settings = make_settings(tmp_path, None, graph_api_base=graph_base, public_base_url=base)
            async with running_api(settings, clock=clock) as api, serve_on(api.app, sock):
                tenant = await api.tenant()
                # The sandbox refuses a free-form message outside the window too (131047).
                number = await connected(api, graph, tenant, base, window_mode="reject", auto_status=False)
                wa_id = customer()
                await customer_writes(api, graph, number, wa_id, "is my order ready?")
                inside = await queued(api, tenant, {"integration_id": number.id, "to": wa_id, "text": "yes"})
                await message_in(api, tenant, inside["id"], "sent")
                calls = len(graph_calls(graph, number, "messages"))

                clock.offset = timedelta(hours=25)
                late = await send(
                    api, tenant, {"integration_id": number.id, "to": wa_id, "text": "still there?"}
                )
                assert late.status_code == 422, late.text
                assert "template" in late.json()["detail"]
                assert "24-hour" in late.json()["detail"]
                never = await send(
                    api, tenant, {"integration_id": number.id, "to": customer(), "text": "hello"}
                )
                assert never.status_code == 422
                assert len(graph_calls(graph, number, "messages")) == calls  # the sandbox received nothing

                template = {"name": "order_update", "language": "en_US", "parameters": ["Ada", 42]}
                accepted = await queued(
                    api, tenant, {"integration_id": number.id, "to": wa_id, "template": template}
                )
                done = await message_in(api, tenant, accepted["id"], "sent")
                (call,) = graph_calls(graph, number, "messages")[calls:]
                assert call.status == 200  # valid against the request schema of Meta's spec
                assert call.json == {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": wa_id,
                    "type": "template",
                    "template": {
                        "name": "order_update",
                        "language": {"policy": "deterministic", "code": "en_US"},
                        "components": [
                            {
                                "type": "body",
                                "parameters": [
                                    {"type": "text", "text": "Ada"},
                                    {"type": "text", "text": "42"},
                                ],
                            }
                        ],
                    },
                }
                assert done["provider_message_id"] == graph.messages[-1].id

                # A customer message Meta delivers late (after an outage) opens no window: its own
                # timestamp, not the time it reached us, is when the customer wrote.
                other = customer()
                stale = int((clock() - timedelta(hours=25)).timestamp())
                change = text_change(
                    number.phone_number_id, other, f"wamid.late.{unique('')}", "from yesterday"
                )
                change["value"]["messages"][0]["timestamp"] = str(stale)
                body = {"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [change]}]}
                stored = await post_meta(api, number.inbound, json.dumps(body).encode(), number.app_secret)
                assert stored.status_code == 200

                async def arrived() -> bool:
                    return any(m.text == "from yesterday" for m in await messages_of(api, number.id))

                await eventually(arrived)
                closed = await send(api, tenant, {"integration_id": number.id, "to": other, "text": "hi"})
                assert closed.status_code == 422, closed.text
    finally:
        await graph.aclose()


# 7. Media --------------------------------------------------------------------------------------


async def test_media_in_and_out(env: Env) -> None:
    api, graph = env.api, env.graph
    tenant = await api.tenant()
    number = await connected(api, graph, tenant, env.base, auto_status=False)
    wa_id = customer()
    result = await graph.emit_inbound(
        number.phone_number_id,
        {
            "from": wa_id,
            "type": "image",
            "media": {
                "content_base64": base64.b64encode(PNG).decode(),
                "mime_type": "image/png",
                "caption": "look",
            },
        },
    )
    assert result["delivery"]["status"] == 200

    async def received() -> Message | None:
        found = await messages_of(api, number.id)
        return found[0] if found else None

    inbound: Message = await eventually(received)
    assert inbound.text == "look"
    (attachment,) = inbound.attachments
    assert attachment["kind"] == "image"
    assert attachment["mime_type"] == "image/png"
    assert "provider_file_id" not in attachment  # Meta's media id stays inside
    calls = len(graph.calls)
    download = await api.client.get(f"/v1/media/{attachment['media_id']}", headers=tenant.key_headers)
    assert download.status_code == 200, download.text
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    lookup, fetch = graph.calls[calls:]
    assert (lookup.path, lookup.authorized) == (f"/v23.0/{result['media_id']}", True)
    assert (fetch.path, fetch.authorized) == ("/whatsapp_business/attachments/", True)
    other = await api.tenant()
    assert (
        await api.client.get(f"/v1/media/{attachment['media_id']}", headers=other.key_headers)
    ).status_code == 404
    # Blue ticks: the read receipt goes to the sandbox, valid against the spec's supplement.
    read = await api.client.post(f"/v1/messages/{inbound.id}/read", headers=tenant.key_headers)
    assert read.status_code == 200, read.text
    receipt = graph_calls(graph, number, "messages")[-1]
    assert (receipt.status, receipt.json) == (
        200,
        {"messaging_product": "whatsapp", "status": "read", "message_id": inbound.provider_message_id},
    )

    photo = b"\xff\xd8\xff\xe0" + secrets.token_bytes(200)
    upload = await api.client.post(
        "/v1/media", files={"file": ("photo.jpg", photo, "image/jpeg")}, headers=tenant.key_headers
    )
    assert upload.status_code == 201, upload.text
    accepted = await queued(
        api,
        tenant,
        {
            "integration_id": number.id,
            "to": wa_id,
            "text": "here is yours",
            "attachments": [{"kind": "image", "media_id": upload.json()["id"]}],
        },
    )
    await message_in(api, tenant, accepted["id"], "sent")
    (posted,) = graph_calls(graph, number, "media")
    assert posted.form is not None
    assert posted.form["messaging_product"] == "whatsapp"
    assert posted.form["type"] == "image/jpeg"
    assert posted.form["file"]["size"] == len(photo)
    media_id = graph.messages[-1].body["image"]["id"]
    assert graph.media[media_id].content == photo
    assert graph.messages[-1].body["image"] == {"id": media_id, "caption": "here is yours"}


# 8. Errors -------------------------------------------------------------------------------------


async def test_provider_errors_retry_fail_or_need_reauth(env: Env) -> None:
    api, graph = env.api, env.graph
    tenant = await api.tenant()
    number = await connected(api, graph, tenant, env.base, auto_status=False)
    wa_id = customer()
    await customer_writes(api, graph, number, wa_id, "hello")

    graph.add_fault("rate_limit", phone_number_id=number.phone_number_id, path="/messages", retry_after=0.3)
    limited = await queued(api, tenant, {"integration_id": number.id, "to": wa_id, "text": "busy"})
    await message_in(api, tenant, limited["id"], "sent")
    assert [c.status for c in graph_calls(graph, number, "messages")] == [429, 200]
    statuses = [
        e.data["status"]
        for e in await events_of(api, tenant.id, "message.status")
        if e.data["message_id"] == limited["id"]
    ]
    assert statuses == ["sent"]  # retried later, never failed

    graph.add_fault("undeliverable", phone_number_id=number.phone_number_id, path="/messages")
    gone = await queued(api, tenant, {"integration_id": number.id, "to": wa_id, "text": "are you there?"})
    failed = await message_in(api, tenant, gone["id"], "failed")
    assert failed["error_code"] == "131026"
    assert "Undeliverable" in failed["error_message"]
    async with api.container.db.sessions() as session:
        contact = await session.get(Contact, failed["contact_id"])
    assert contact is not None
    assert contact.unreachable is True
    shown = await api.client.get(f"/v1/contacts/{failed['contact_id']}", headers=tenant.key_headers)
    assert shown.json()["unreachable"] is True

    graph.add_fault("auth", phone_number_id=number.phone_number_id, path="/messages")
    revoked = await queued(api, tenant, {"integration_id": number.id, "to": wa_id, "text": "one more"})
    failed = await message_in(api, tenant, revoked["id"], "failed")
    assert failed["error_code"] == "190"
    assert "access token" in failed["error_message"]
    integration = (await api.client.get(f"/v1/integrations/{number.id}", headers=tenant.key_headers)).json()
    assert integration["status"] == "needs_reauth"
    changed = await events_of(api, tenant.id, "integration.status_changed")
    assert [(e.data["previous_status"], e.data["status"]) for e in changed][-1] == ("active", "needs_reauth")
    refused = await send(api, tenant, {"integration_id": number.id, "to": wa_id, "text": "again"})
    assert refused.status_code == 409
    assert len(graph_calls(graph, number, "messages")) == 4  # 429, 200, 131026, 190: nothing after

    # Meta issues a new token; reconnecting with it makes the number usable again.
    renewed_token = unique("EAAG-renewed-")
    graph.numbers[number.phone_number_id].access_token = renewed_token
    reconnect = f"/v1/integrations/{number.id}/reconnect"
    stale = await api.client.post(reconnect, json={}, headers=tenant.key_headers)
    assert stale.status_code == 422, stale.text
    assert "access token" in stale.json()["detail"]
    identity = await api.client.post(
        reconnect, json={"credentials": {"phone_number_id": "1"}}, headers=tenant.key_headers
    )
    assert identity.status_code == 422
    renewed = await api.client.post(
        reconnect, json={"credentials": {"access_token": renewed_token}}, headers=tenant.key_headers
    )
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["status"] == "active"
    assert renewed.json()["credentials"]["access_token"] == "••••" + renewed_token[-4:]
    assert renewed_token not in renewed.text
    back = await queued(api, tenant, {"integration_id": number.id, "to": wa_id, "text": "we're back"})
    await message_in(api, tenant, back["id"], "sent")
    assert graph_calls(graph, number, "messages")[-1].authorized is True


# 9. Seed 003 -----------------------------------------------------------------------------------


async def test_seed_003_endpoints(env: Env, tmp_path: Path) -> None:
    graph = env.graph
    settings = {"graph_api_base": env.graph_base}
    async with running_api(make_settings(tmp_path, None, **settings)) as first:
        tenant = await first.tenant()
        number = await connected(first, graph, tenant, None)
        unset = await first.client.get("/api/whatsapp/webhook", params={"hub.mode": "subscribe"})
        assert unset.status_code == 404
    # The operator names the integration and restarts.
    restarted = make_settings(tmp_path, None, whatsapp_seed_integration_id=number.id, **settings)
    async with running_api(restarted) as api:
        tenant = TenantHandle(
            api, tenant.id, tenant.slug, tenant.api_key, tenant.owner_email, tenant.owner_password
        )
        token = number.integration["config"]["verify_token"]
        params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "987654"}
        handshake = await api.client.get("/api/whatsapp/webhook", params=params)
        assert (handshake.status_code, handshake.text) == (200, "987654")
        wrong = await api.client.get("/api/whatsapp/webhook", params={**params, "hub.verify_token": "guess"})
        assert wrong.status_code == 403

        wa_id = customer()
        change = text_change(number.phone_number_id, wa_id, f"wamid.seed.{unique('')}", "hi from the seed")
        raw = json.dumps(
            {"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [change]}]}
        ).encode()
        unsigned = await api.client.post(
            "/api/whatsapp/webhook", content=raw, headers={"content-type": "application/json"}
        )
        assert unsigned.status_code == 401
        assert await raw_events(api, number.id) == []
        signed = await post_meta(api, "/api/whatsapp/webhook", raw, number.app_secret)
        assert signed.status_code == 200, signed.text
        assert signed.json()["stored"] == 1
        await raw_settled(api, number.id, 1)

        viewer = await tenant.user_headers(Role.VIEWER)
        denied = await api.client.post(
            "/api/whatsapp/send", json={"to": wa_id, "message": "x"}, headers=viewer
        )
        assert denied.status_code == 403
        for headers in (await tenant.user_headers(Role.ADMIN), await tenant.owner_headers()):
            calls = len(graph_calls(graph, number, "messages"))
            accepted = await api.client.post(
                "/api/whatsapp/send", json={"to": f"+{wa_id}", "message": "we got it"}, headers=headers
            )
            assert accepted.status_code == 202, accepted.text
            queued_message = accepted.json()["message"]
            assert queued_message["status"] == "queued"
            sent = await message_in(api, tenant, queued_message["id"], "sent")
            (call,) = graph_calls(graph, number, "messages")[calls:]
            assert call.status == 200
            assert call.json["to"] == wa_id
            assert call.json["text"] == {"body": "we got it"}
            assert sent["provider_message_id"] == graph.messages[-1].id
        outside = await api.client.post(
            "/api/whatsapp/send",
            json={"to": customer(), "message": "cold"},
            headers=await tenant.owner_headers(),
        )
        assert outside.status_code == 422
        # Another account's owner cannot use this account's number.
        stranger = await api.tenant()
        foreign = await api.client.post(
            "/api/whatsapp/send", json={"to": wa_id, "message": "x"}, headers=await stranger.owner_headers()
        )
        assert foreign.status_code == 404
        async with api.container.db.sessions() as session:
            row = await session.get(Integration, number.id)
        assert row is not None
        assert row.messages_sent == 2


# 10. Rate limits -------------------------------------------------------------------------------


async def test_the_operators_rate_policy_paces_a_number(env: Env, tmp_path: Path) -> None:
    policies = {"whatsapp_cloud": {"number": [4, 1]}}  # 4 messages/s, burst 1
    settings = make_settings(tmp_path, None, graph_api_base=env.graph_base, rate_limit_policies=policies)
    async with running_api(settings) as api:
        tenant = await api.tenant()
        number = await connected(api, env.graph, tenant, None)
        wa_id = customer()
        change = text_change(number.phone_number_id, wa_id, f"wamid.rate.{unique('')}", "hello")
        raw = json.dumps(
            {"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [change]}]}
        )
        assert (await post_meta(api, number.inbound, raw.encode(), number.app_secret)).status_code == 200
        await raw_settled(api, number.id, 1)
        sent = await asyncio.gather(
            *(
                queued(api, tenant, {"integration_id": number.id, "to": wa_id, "text": f"update {index}"})
                for index in range(5)
            )
        )
        for accepted in sent:
            await message_in(api, tenant, accepted["id"], "sent")
        times = sorted(c.at for c in graph_calls(env.graph, number, "messages"))
        assert len(times) == 5
        # One may go at once (the burst), then one every 0.25 s; unpaced they follow each
        # other within milliseconds.
        gaps = [later - earlier for earlier, later in itertools.pairwise(times[1:])]
        assert min(gaps) >= 0.2, gaps
