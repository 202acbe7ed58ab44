"""Twilio (WhatsApp) end to end: the running gateway on a real port and the Twilio sandbox.

The sandbox signs and POSTs the webhooks itself (inbound messages, status callbacks) to the
gateway; twilio-python's `RequestValidator` is the oracle that those signatures are Twilio's.
Sends go to the sandbox, which checks each form against Twilio's OpenAPI description.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from chatgate.sandbox.twilio_api import Fault, SandboxTwilioApi
from chatgate.sandbox.twilio_api import Settings as SandboxSettings
from tests.asgi_server import serve_asgi
from tests.conftest import Api, TenantHandle, make_settings, running_api
from tests.webhook_helpers import eventually
from tests.whatsapp_helpers import (
    connect,
    events_of,
    message,
    message_in,
    messages_of,
    queued,
    raw_events,
    raw_settled,
    reserve_port,
    send,
    serve_on,
)

SEED_ROUTE = "/api/integrations/webhooks/whatsapp/"
JPEG = b"\xff\xd8\xff\xe0" + secrets.token_bytes(120)


@dataclass
class Env:
    api: Api
    base: str  # the gateway's public base URL (a real port)
    twilio: SandboxTwilioApi
    control: httpx.AsyncClient  # the sandbox's control API


@dataclass
class Sender:
    integration: dict[str, Any]
    account_sid: str
    auth_token: str
    address: str  # the WhatsApp sender (`whatsapp:+1415…`), or a number of the messaging service

    @property
    def id(self) -> str:
        return str(self.integration["id"])

    @property
    def inbound(self) -> str:
        return f"/in/twilio/{self.integration['public_id']}"


def new_address() -> str:
    return "whatsapp:+1415" + str(secrets.randbelow(10**7)).zfill(7)


def customer() -> str:
    return "whatsapp:+1555" + str(secrets.randbelow(10**7)).zfill(7)


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    # Status callbacks a little apart, as Twilio's are: after our send has committed.
    twilio = SandboxTwilioApi(settings=SandboxSettings(callback_delay=0.1))
    tmp = tmp_path_factory.mktemp("twilio-e2e")
    try:
        async with serve_asgi(twilio.app) as twilio_base, httpx.AsyncClient(base_url=twilio_base) as control:
            sock, base = reserve_port()
            settings = make_settings(tmp, None, twilio_api_base=twilio_base, public_base_url=base)
            async with running_api(settings) as api, serve_on(api.app, sock):
                yield Env(api, base, twilio, control)
    finally:
        await twilio.aclose()


@pytest.fixture(autouse=True)
def sandbox_defaults(env: Env) -> None:
    env.twilio.settings.whatsapp_window = "off"
    env.twilio.settings.auto_status = True
    env.twilio.faults.clear()


async def connected(api: Api, twilio: SandboxTwilioApi, tenant: TenantHandle, **config: Any) -> Sender:
    """A sandbox account connected through the API: sending from a new WhatsApp number, or
    (given `messaging_service_sid`) through a messaging service."""
    address = new_address()
    account = twilio.add_account(senders=[address])
    if "messaging_service_sid" not in config:
        config = {"from": address, **config}
    response = await connect(
        api,
        tenant,
        {
            "kind": "twilio",
            "config": {"account_sid": account.sid, **config},
            "credentials": {"auth_token": account.auth_token},
        },
    )
    assert response.status_code == 201, response.text
    return Sender(response.json(), account.sid, account.auth_token, address)


async def sandbox_inbound(env: Env, sender: Sender, url: str, **fields: Any) -> dict[str, Any]:
    """The sandbox POSTs a signed inbound-message webhook to `url` (as Twilio would)."""
    payload = {"account_sid": sender.account_sid, "url": url, "to": sender.address, **fields}
    payload.setdefault("from", customer())
    payload.setdefault("body", "hello")
    answer = await env.control.post("/sandbox/inbound", json=payload)
    assert answer.status_code == 200, answer.text
    record: dict[str, Any] = answer.json()
    return record


def twilio_signed(record: dict[str, Any], auth_token: str, url: str) -> bool:
    """The oracle: twilio-python's validator accepts the sandbox's signature for `url`."""
    params = dict(record["params"])
    return bool(RequestValidator(auth_token).validate(url, params, record["signature"]))


async def stored_text(api: Api, integration_id: str, text: str) -> Any:
    async def find() -> Any:
        return next((m for m in await messages_of(api, integration_id) if m.text == text), None)

    return await eventually(find)


async def customer_writes(env: Env, sender: Sender, wa: str, text: str = "hi") -> None:
    record = await sandbox_inbound(env, sender, f"{env.base}{sender.inbound}", **{"from": wa, "body": text})
    assert record["response"]["status"] == 200, record
    await stored_text(env.api, sender.id, text)


def sandbox_sends(env: Env, sender: Sender) -> list[Any]:
    return [
        r
        for r in env.twilio.requests
        if r.method == "POST" and r.path == f"/2010-04-01/Accounts/{sender.account_sid}/Messages.json"
    ]


async def history(api: Api, tenant: TenantHandle, message_id: str) -> list[str]:
    return [
        e.data["status"]
        for e in await events_of(api, tenant.id, "message.status")
        if e.data["message_id"] == message_id
    ]


# 10. Connect -----------------------------------------------------------------------------------


async def test_connect_is_validated_at_the_sandbox(env: Env) -> None:
    api, twilio = env.api, env.twilio
    tenant = await api.tenant()
    address = new_address()
    account = twilio.add_account(senders=[address], friendly_name="Acme Bistro")
    created = await connect(
        api,
        tenant,
        {
            "kind": "twilio",
            "config": {"account_sid": account.sid, "from": address},
            "credentials": {"auth_token": account.auth_token},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "active"
    assert body["inbound_path"] == f"/in/twilio/{body['public_id']}"
    assert body["config"] == {
        "account_sid": account.sid,
        "from": address,
        "channel": "whatsapp",
        "account_name": "Acme Bistro",
    }
    assert account.auth_token not in json.dumps(body)
    assert body["credentials"] == {"auth_token": "••••" + account.auth_token[-4:]}
    check = [r for r in twilio.requests if r.path == f"/2010-04-01/Accounts/{account.sid}.json"]
    assert [(r.method, r.auth_user, r.status) for r in check] == [("GET", account.sid, 200)]

    # Seed 000's field name for the sender, and API keys for the API calls.
    second = twilio.add_account()
    key_sid, key_secret = twilio.add_api_key(second.sid)
    alias = await connect(
        api,
        tenant,
        {
            "kind": "twilio",
            "config": {"account_sid": second.sid, "whatsapp_number": "+14155238886"},
            "credentials": {
                "auth_token": second.auth_token,
                "api_key_sid": key_sid,
                "api_key_secret": key_secret,
            },
        },
    )
    assert alias.status_code == 201, alias.text
    assert alias.json()["config"]["from"] == "whatsapp:+14155238886"
    assert "whatsapp_number" not in alias.json()["config"]
    assert twilio.requests[-1].auth_user == key_sid

    before = (await api.client.get("/v1/integrations", headers=tenant.key_headers)).json()["data"]
    third = twilio.add_account()
    refused = [
        (
            {"account_sid": third.sid, "from": new_address()},
            {"auth_token": "0" * 32},
            "refused these credentials",
        ),
        (
            {"account_sid": "AC" + secrets.token_hex(16), "from": new_address()},
            {"auth_token": third.auth_token},
            "",
        ),
        ({"account_sid": third.sid, "from": new_address()}, {}, "auth_token is required"),
        ({"account_sid": "AC123", "from": new_address()}, {"auth_token": third.auth_token}, "account_sid"),
        ({"account_sid": third.sid}, {"auth_token": third.auth_token}, "'from'"),
    ]
    for config, credentials, says in refused:
        answer = await connect(api, tenant, {"kind": "twilio", "config": config, "credentials": credentials})
        assert answer.status_code == 422, (config, answer.text)
        assert says in answer.json()["detail"]
    after = (await api.client.get("/v1/integrations", headers=tenant.key_headers)).json()["data"]
    assert [i["id"] for i in after] == [i["id"] for i in before]  # nothing stored

    twice = await connect(
        api,
        await api.tenant(),
        {
            "kind": "twilio",
            "config": {"account_sid": account.sid, "from": address},
            "credentials": {"auth_token": account.auth_token},
        },
    )
    assert twice.status_code == 409


# 11. Inbound webhooks sent by the sandbox ------------------------------------------------------


async def test_inbound_webhooks_signed_by_the_sandbox(env: Env) -> None:
    api = env.api
    tenant = await api.tenant()
    sender = await connected(api, env.twilio, tenant)
    wa = customer()
    url = f"{env.base}{sender.inbound}"
    media = [{"content_type": "image/jpeg", "content_base64": base64.b64encode(JPEG).decode()}]
    first = await sandbox_inbound(
        env, sender, url, **{"from": wa, "body": "Table for two?", "profile_name": "Ada", "media": media}
    )
    assert first["response"]["status"] == 200, first
    assert twilio_signed(first, sender.auth_token, url)
    stored = await stored_text(api, sender.id, "Table for two?")
    (attachment,) = stored.attachments
    assert attachment["kind"] == "image"
    conversation = await api.client.get(
        f"/v1/conversations/{stored.conversation_id}", headers=tenant.key_headers
    )
    assert conversation.json()["external_id"] == wa
    contact = await api.client.get(f"/v1/contacts/{stored.contact_id}", headers=tenant.key_headers)
    assert (contact.json()["display_name"], contact.json()["phone"]) == ("Ada", wa.removeprefix("whatsapp:"))
    # The image: fetched from Twilio with the account's credentials, through its CDN redirect.
    download = await api.client.get(f"/v1/media/{attachment['media_id']}", headers=tenant.key_headers)
    assert download.status_code == 200, download.text
    assert download.content == JPEG
    assert download.headers["content-type"] == "image/jpeg"

    # Seed 000's shared URL, routed by `To`.
    seed = await sandbox_inbound(
        env, sender, f"{env.base}{SEED_ROUTE}", **{"from": wa, "body": "via the seed URL"}
    )
    assert seed["response"]["status"] == 200, seed
    assert twilio_signed(seed, sender.auth_token, f"{env.base}{SEED_ROUTE}")
    await stored_text(api, sender.id, "via the seed URL")

    # The same webhook again is stored once; a tampered parameter is refused and stores nothing.
    rows = len(await raw_events(api, sender.id))
    async with httpx.AsyncClient(base_url=env.base) as client:

        async def replay(path: str, record: dict[str, Any], **changes: str) -> httpx.Response:
            params = [(name, changes.get(name, value)) for name, value in record["params"]]
            headers = {
                "content-type": "application/x-www-form-urlencoded",
                "x-twilio-signature": record["signature"],
            }
            return await client.post(path, content=urlencode(params), headers=headers)

        again = await replay(sender.inbound, first)
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
        assert (await replay(sender.inbound, first, Body="Table for twenty?")).status_code == 401
        assert (await replay(sender.inbound, first, From=customer())).status_code == 401
        assert (await replay(SEED_ROUTE, seed, Body="changed")).status_code == 401
        assert (await replay(sender.inbound, seed)).status_code == 401  # signed for another URL
        unknown = await replay(SEED_ROUTE, seed, To=new_address())
        assert unknown.status_code == 404
    assert len(await raw_events(api, sender.id)) == rows


async def test_a_number_of_a_messaging_service_is_routed_by_its_sid(env: Env) -> None:
    api = env.api
    tenant = await api.tenant()
    service = "MG" + secrets.token_hex(16)
    sender = await connected(api, env.twilio, tenant, messaging_service_sid=service, channel="whatsapp")
    assert sender.integration["config"]["messaging_service_sid"] == service
    pool_number = new_address()  # one of the service's senders, not configured anywhere here
    record = await sandbox_inbound(
        env,
        sender,
        f"{env.base}{SEED_ROUTE}",
        to=pool_number,
        messaging_service_sid=service,
        body="through the service",
    )
    assert record["response"]["status"] == 200, record
    assert twilio_signed(record, sender.auth_token, f"{env.base}{SEED_ROUTE}")
    stored = await stored_text(api, sender.id, "through the service")
    assert stored.integration_id == sender.id


async def test_behind_a_proxy_the_public_url_is_signed(env: Env, tmp_path: Path) -> None:
    sock, base = reserve_port()
    # No public base URL configured: the forwarded headers of a trusted proxy say what it is.
    settings = make_settings(
        tmp_path, None, twilio_api_base=str(env.control.base_url).rstrip("/"), trusted_proxies=["127.0.0.1"]
    )
    async with running_api(settings) as api, serve_on(api.app, sock):
        tenant = await api.tenant()
        sender = await connected(api, env.twilio, tenant)
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example"}
        for path, text in ((sender.inbound, "through the proxy"), (SEED_ROUTE, "seed through the proxy")):
            public = f"https://public.example{path}"
            record = await sandbox_inbound(
                env, sender, f"{base}{path}", signing_url=public, headers=forwarded, body=text
            )
            assert record["response"]["status"] == 200, record
            assert twilio_signed(record, sender.auth_token, public)
            assert not twilio_signed(record, sender.auth_token, f"{base}{path}")
            await stored_text(api, sender.id, text)
        rows = len(await raw_events(api, sender.id))
        public = f"https://public.example{sender.inbound}"
        unproxied = await sandbox_inbound(
            env, sender, f"{base}{sender.inbound}", signing_url=public, body="x"
        )
        assert unproxied["response"]["status"] == 401
        elsewhere = await sandbox_inbound(
            env,
            sender,
            f"{base}{sender.inbound}",
            signing_url=public,
            headers={**forwarded, "X-Forwarded-Host": "attacker.example"},
            body="y",
        )
        assert elsewhere["response"]["status"] == 401
        assert len(await raw_events(api, sender.id)) == rows


# 12. Status callbacks and error codes ----------------------------------------------------------


async def test_status_callbacks_move_forward(env: Env) -> None:
    api, twilio = env.api, env.twilio
    tenant = await api.tenant()
    sender = await connected(api, twilio, tenant)
    wa = customer()
    await customer_writes(env, sender, wa)
    # A plain number names the customer's WhatsApp conversation.
    first = await queued(
        api, tenant, {"integration_id": sender.id, "to": wa.removeprefix("whatsapp:"), "text": "Ready!"}
    )
    read = await message_in(api, tenant, first["id"], "read")
    sid = read["provider_message_id"]
    assert twilio.messages[sid].status_callback == f"{env.base}{sender.inbound}"
    callbacks = [c for c in twilio.callbacks if c.message_sid == sid]
    assert [(c.status, c.response_status) for c in callbacks] == [
        ("queued", 200),
        ("sent", 200),
        ("delivered", 200),
        ("read", 200),
    ]
    assert all(
        twilio_signed({"params": c.params, "signature": c.signature}, sender.auth_token, c.url)
        for c in callbacks
    )
    assert await history(api, tenant, first["id"]) == ["sent", "delivered", "read"]

    # Reported out of order: nothing moves back, and failed never follows read.
    twilio.settings.auto_status = False
    second = await queued(api, tenant, {"integration_id": sender.id, "to": wa, "text": "Still ready"})
    sid = (await message_in(api, tenant, second["id"], "sent"))["provider_message_id"]
    before = len(await raw_events(api, sender.id))
    for status in ("read", "delivered", "sent", "failed"):
        reported = await env.control.post(f"/sandbox/messages/{sid}/status", json={"status": status})
        assert reported.json()["response_status"] == 200
    await raw_settled(api, sender.id, before + 4)
    current = await message(api, tenant, second["id"])
    assert (current["status"], current["delivered_at"], current["failed_at"]) == ("read", None, None)
    assert await history(api, tenant, second["id"]) == ["sent", "read"]

    for status, code in (("undelivered", 30003), ("failed", 63003)):
        third = await queued(api, tenant, {"integration_id": sender.id, "to": wa, "text": f"then {status}"})
        sid = (await message_in(api, tenant, third["id"], "sent"))["provider_message_id"]
        await env.control.post(f"/sandbox/messages/{sid}/status", json={"status": status, "error_code": code})
        failed = await message_in(api, tenant, third["id"], "failed")
        assert failed["error_code"] == str(code)
        assert failed["error_message"].startswith(f"Twilio {code}: ")


async def test_error_codes(env: Env) -> None:
    api, twilio = env.api, env.twilio
    tenant = await api.tenant()
    sender = await connected(api, twilio, tenant)
    # The customer wrote (a webhook the gateway received); Twilio's own window says otherwise.
    wa = customer()
    params = [("MessageSid", "SM" + secrets.token_hex(16)), ("SmsStatus", "received"), ("From", wa)]
    params += [
        ("To", sender.address),
        ("Body", "anyone there?"),
        ("AccountSid", sender.account_sid),
        ("NumMedia", "0"),
    ]
    url = f"{env.base}{sender.inbound}"
    signature = RequestValidator(sender.auth_token).compute_signature(url, dict(params))
    async with httpx.AsyncClient() as client:
        posted = await client.post(
            url,
            content=urlencode(params),
            headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
        )
    assert posted.status_code == 200, posted.text
    await stored_text(api, sender.id, "anyone there?")

    # 63016 in a status callback: accepted, then failed saying a template is needed.
    twilio.settings.whatsapp_window = "callback"
    late = await queued(api, tenant, {"integration_id": sender.id, "to": wa, "text": "freeform"})
    failed = await message_in(api, tenant, late["id"], "failed")
    assert failed["error_code"] == "63016"
    assert "template" in failed["error_message"]
    # 63016 answered at once.
    twilio.settings.whatsapp_window = "reject"
    refused = await queued(api, tenant, {"integration_id": sender.id, "to": wa, "text": "freeform again"})
    failed = await message_in(api, tenant, refused["id"], "failed")
    assert failed["error_code"] == "63016"
    assert "template" in failed["error_message"]
    assert [r.status for r in sandbox_sends(env, sender)] == [201, 400]

    # 21211: not a phone number (a template, so our window check lets it through to Twilio).
    template = {"content_sid": "HX" + secrets.token_hex(16)}
    invalid = await queued(
        api, tenant, {"integration_id": sender.id, "to": "whatsapp:+12", "template": template}
    )
    failed = await message_in(api, tenant, invalid["id"], "failed")
    assert failed["error_code"] == "21211"
    assert sandbox_sends(env, sender)[-1].status == 400

    # 20003: the credentials stopped working → the integration needs them again.
    twilio.inject_fault(Fault("unauthorized", path_contains="/Messages.json"))
    revoked = await queued(api, tenant, {"integration_id": sender.id, "to": wa, "template": template})
    failed = await message_in(api, tenant, revoked["id"], "failed")
    assert failed["error_code"] == "20003"
    integration = (await api.client.get(f"/v1/integrations/{sender.id}", headers=tenant.key_headers)).json()
    assert integration["status"] == "needs_reauth"
    blocked = await send(api, tenant, {"integration_id": sender.id, "to": wa, "template": template})
    assert blocked.status_code == 409

    # The account's token was rotated: reconnect with the new one and sending works again.
    rotated = secrets.token_hex(16)
    twilio.accounts[sender.account_sid].auth_token = rotated
    reconnect = f"/v1/integrations/{sender.id}/reconnect"
    stale = await api.client.post(reconnect, json={}, headers=tenant.key_headers)
    assert stale.status_code == 422, stale.text
    renewed = await api.client.post(
        reconnect, json={"credentials": {"auth_token": rotated}}, headers=tenant.key_headers
    )
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["status"] == "active"
    back = await queued(api, tenant, {"integration_id": sender.id, "to": wa, "template": template})
    await message_in(api, tenant, back["id"], "sent")
    assert sandbox_sends(env, sender)[-1].status == 201


# 13. Sending -----------------------------------------------------------------------------------


async def test_send_text_media_and_template(env: Env) -> None:
    api, twilio = env.api, env.twilio
    tenant = await api.tenant()
    sender = await connected(api, twilio, tenant)
    wa = customer()
    await customer_writes(env, sender, wa)
    callback = ("StatusCallback", f"{env.base}{sender.inbound}")
    content_sid = "HX" + secrets.token_hex(16)
    cases: list[tuple[dict[str, Any], list[tuple[str, str]]]] = [
        ({"text": "Your table is ready"}, [("Body", "Your table is ready")]),
        (
            {
                "text": "Your receipt",
                "attachments": [{"kind": "image", "url": "https://cdn.example.com/receipt.png"}],
            },
            [("Body", "Your receipt"), ("MediaUrl", "https://cdn.example.com/receipt.png")],
        ),
        (
            {"template": {"content_sid": content_sid, "variables": {"1": "Ada", "2": 7}}},
            [("ContentSid", content_sid), ("ContentVariables", json.dumps({"1": "Ada", "2": "7"}))],
        ),
    ]
    for fields, expected in cases:
        accepted = await queued(api, tenant, {"integration_id": sender.id, "to": wa, **fields})
        done = await message_in(api, tenant, accepted["id"], "sent")
        request = sandbox_sends(env, sender)[-1]
        assert request.status == 201  # valid against Twilio's CreateMessageRequest and its rules
        assert request.auth_user == sender.account_sid
        assert request.form == [("To", wa), ("From", sender.address), *expected, callback]
        sandbox_message = twilio.messages[done["provider_message_id"]]
        assert sandbox_message.form == request.form
    assert len(sandbox_sends(env, sender)) == len(cases)
