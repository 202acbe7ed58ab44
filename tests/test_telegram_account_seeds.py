"""The seeds' contracts for Telegram accounts, called the way their clients call them.

Seed 001 (integration service): `POST /api/integrations/telegram/connect` with a phone (then the
native code step) or a bot token, and `/api/integrations/telegram/accounts…`.

Seed 002 (a CRM's edge functions, with `X-API-Key` and JSON bodies exactly as in the seed):
`POST /integration/lovable/connect`, inbound messages POSTed to the CRM's webhook as
`{project_id, account_phone, from_id, from_username, text}`, `POST /telegram/send`,
`GET /telegram/status`, and `PUT /v1/projects/{project_id}` routing a project's sends through a
bot or an external provider instead of the account."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from chatgate.config import Settings
from chatgate.providers.telegram_user.fake import FakeTelegram
from chatgate.sandbox.telegram_bot_api import SandboxBotApi
from tests.account_helpers import (
    account_api,
    account_settings,
    login,
    message_status,
    new_phone,
    step,
    until,
    wait_live,
)
from tests.asgi_server import serve_asgi
from tests.conftest import Api, TenantHandle, unique
from tests.webhook_helpers import Receiver, start_receiver, webhook_integration


@dataclass
class Seeds:
    api: Api
    fake: FakeTelegram
    sandbox: SandboxBotApi
    receiver: Receiver


@asynccontextmanager
async def seeds_stack(settings_factory: Callable[..., Settings]) -> AsyncIterator[Seeds]:
    fake = FakeTelegram()
    sandbox = SandboxBotApi(webhook_retry_delay=0.05)
    receiver, runner = await start_receiver()
    try:
        async with serve_asgi(sandbox.app) as sandbox_url:
            settings = account_settings(settings_factory, telegram_api_base=sandbox_url)
            async with account_api(settings, fake) as api:
                yield Seeds(api, fake, sandbox, receiver)
    finally:
        await runner.cleanup()


@pytest.fixture
async def seeds(settings_factory: Callable[..., Settings]) -> AsyncIterator[Seeds]:
    async with seeds_stack(settings_factory) as stack:
        yield stack


# --- seed 001 ------------------------------------------------------------------------------


async def test_seed_001_connect_an_account_and_manage_it(seeds: Seeds) -> None:
    api, fake = seeds.api, seeds.fake
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone, "Seed", username=unique("seed_"))
    connect = await api.client.post(
        "/api/integrations/telegram/connect", json={"phone": phone}, headers=tenant.key_headers
    )
    assert connect.status_code == 201, connect.text
    account = connect.json()
    assert account["login"]["state"] == "code_sent"
    assert account["status"] == "pending"
    active = await step(api, tenant, account["id"], "code", code=fake.last_code(phone))
    assert active["status"] == "active"

    listed = await api.client.get("/api/integrations/telegram/accounts", headers=tenant.key_headers)
    assert [a["id"] for a in listed.json()] == [account["id"]]
    got = await api.client.get(
        f"/api/integrations/telegram/accounts/{account['id']}", headers=tenant.key_headers
    )
    assert got.status_code == 200
    assert (got.json()["phone"], got.json()["status"]) == (phone, "active")

    await wait_live(api, account["id"])
    reconnected = await api.client.post(
        f"/api/integrations/telegram/accounts/{account['id']}/reconnect", headers=tenant.key_headers
    )
    assert reconnected.status_code == 200, reconnected.text
    assert reconnected.json()["status"] == "active"

    # A QR login through the same connect path (no phone).
    qr = await api.client.post(
        "/api/integrations/telegram/connect", json={"method": "qr"}, headers=tenant.key_headers
    )
    assert qr.status_code == 201
    assert qr.json()["login"]["qr_url"].startswith("tg://login?token=")

    deleted = await api.client.delete(
        f"/api/integrations/telegram/accounts/{account['id']}", headers=tenant.key_headers
    )
    assert deleted.status_code == 204
    missing = await api.client.get(
        f"/api/integrations/telegram/accounts/{account['id']}", headers=tenant.key_headers
    )
    assert missing.status_code == 404
    other = await api.tenant()
    foreign = await api.client.get(
        f"/api/integrations/telegram/accounts/{qr.json()['id']}", headers=other.key_headers
    )
    assert foreign.status_code == 404


async def test_seed_001_connect_with_a_bot_token(seeds: Seeds) -> None:
    api = seeds.api
    tenant = await api.tenant()
    malformed = await api.client.post(
        "/api/integrations/telegram/connect",
        json={"bot_token": "not-a-token-at-all"},
        headers=tenant.key_headers,
    )
    assert malformed.status_code == 422
    assert "is not a Telegram bot token" in malformed.json()["detail"]
    wrong = await api.client.post(
        "/api/integrations/telegram/connect",
        json={"bot_token": "123456789:TESTnoSuchBotAtTheSandbox_000000"},
        headers=tenant.key_headers,
    )
    assert wrong.status_code == 422
    assert "Telegram refused this bot token" in wrong.json()["detail"]
    bot = seeds.sandbox.create_bot(username=unique("seedbot") + "_bot")
    good = await api.client.post(
        "/api/integrations/telegram/connect", json={"bot_token": bot.token}, headers=tenant.key_headers
    )
    assert good.status_code == 201, good.text
    assert bot.token not in good.text
    listed = await api.client.get("/api/integrations/telegram/accounts", headers=tenant.key_headers)
    assert listed.json() == []  # a bot is not a user account


# --- seed 002 ------------------------------------------------------------------------------


def edge_headers(tenant: TenantHandle) -> dict[str, str]:
    """What the seed's edge functions send: `X-API-Key` and `Content-Type: application/json`."""
    return {"X-API-Key": tenant.api_key, "Content-Type": "application/json"}


async def edge_post(api: Api, tenant: TenantHandle, path: str, body: dict[str, Any]) -> Any:
    return await api.client.post(path, content=json.dumps(body), headers=edge_headers(tenant))


async def test_seed_002_connect_inbound_send_status(seeds: Seeds) -> None:
    api, fake, receiver = seeds.api, seeds.fake, seeds.receiver
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone, "Crm")
    account = await login(api, tenant, fake, phone)
    await wait_live(api, account["id"])
    project_id = f"org-{unique('')}"
    digits = phone.removeprefix("+")

    connected = await edge_post(
        api,
        tenant,
        "/integration/lovable/connect",
        {"project_id": project_id, "webhook_url": receiver.url + "/plain", "phone": phone},
    )
    assert connected.status_code == 200, connected.text
    assert connected.json()["status"] == "connected"
    assert connected.json()["integration_id"] == account["id"]

    client = fake.add_user("Client", username=unique("client_"), phone=new_phone())
    await fake.deliver_message(phone, client, "Привет!")
    await until(lambda: [r for r in receiver.requests if r["path"] == "/hook/plain"], timeout=15)
    request = next(r for r in receiver.requests if r["path"] == "/hook/plain")
    assert json.loads(request["body"]) == {
        "project_id": project_id,
        "account_phone": digits,
        "from_id": client.id,
        "from_username": client.username,
        "text": "Привет!",
    }
    assert "X-Lovable-Secret" not in request["headers"]

    # With a shared secret (a second project of the same tenant, same account).
    secret_project = f"org-{unique('')}"
    again = await edge_post(
        api,
        tenant,
        "/integration/lovable/connect",
        {
            "project_id": secret_project,
            "webhook_url": receiver.url + "/secret",
            "phone": phone,
            "webhook_secret": "s3cret-shared-value",
        },
    )
    assert again.status_code == 200, again.text
    await fake.deliver_message(phone, client, "second")
    await until(lambda: [r for r in receiver.requests if r["path"] == "/hook/secret"], timeout=15)
    secret_request = next(r for r in receiver.requests if r["path"] == "/hook/secret")
    assert secret_request["headers"]["X-Lovable-Secret"] == "s3cret-shared-value"
    assert json.loads(secret_request["body"])["project_id"] == secret_project

    # Only this account's messages reach this project.
    other_phone = new_phone()
    fake.add_account(other_phone, "Other")
    other_account = await login(api, tenant, fake, other_phone)
    await wait_live(api, other_account["id"])
    await fake.deliver_message(other_phone, client, "not for the CRM")
    await fake.deliver_message(phone, client, "third")
    await until(lambda: len([r for r in receiver.requests if r["path"] == "/hook/plain"]) >= 3, timeout=15)
    texts = [json.loads(r["body"])["text"] for r in receiver.requests if r["path"] == "/hook/plain"]
    assert texts == ["Привет!", "second", "third"]

    sent = await edge_post(
        api,
        tenant,
        "/telegram/send",
        {"project_id": project_id, "phone": phone, "to": client.phone, "text": "Hello"},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["via"] == "telegram_user"
    done = await message_status(api, tenant, sent.json()["message_id"])
    assert done["status"] == "sent", done
    record = fake.sent[-1]
    assert (record.from_phone, record.chat_id, record.text) == (phone, client.id, "Hello")

    by_id = await edge_post(
        api,
        tenant,
        "/telegram/send",
        {"project_id": project_id, "phone": digits, "to": client.id, "text": "by id"},
    )
    assert by_id.status_code == 200, by_id.text
    assert (await message_status(api, tenant, by_id.json()["message_id"]))["status"] == "sent"
    assert fake.sent[-1].text == "by id"

    # The CRM keeps phone numbers as digits (its own `account_phone` is "79955073535"): a
    # digits-only `to` long enough to be an international number is a phone, not an id.
    digits_only = new_phone()
    dora = fake.add_user("Dora", phone=digits_only)
    as_digits = await edge_post(
        api,
        tenant,
        "/telegram/send",
        {"project_id": project_id, "phone": digits, "to": digits_only.removeprefix("+"), "text": "by digits"},
    )
    assert as_digits.status_code == 200, as_digits.text
    assert (await message_status(api, tenant, as_digits.json()["message_id"]))["status"] == "sent"
    assert (fake.sent[-1].chat_id, fake.sent[-1].text) == (dora.id, "by digits")

    status = await api.client.get("/telegram/status", headers={"X-API-Key": tenant.api_key})
    assert status.status_code == 200
    accounts = {a["phone"]: a for a in status.json()["accounts"]}
    assert accounts[phone]["connected"] is True
    assert accounts[phone]["status"] == "active"
    assert accounts[other_phone]["integration_id"] == other_account["id"]

    unknown = await edge_post(
        api,
        tenant,
        "/integration/lovable/connect",
        {"project_id": project_id, "webhook_url": receiver.url, "phone": "+15550000000"},
    )
    assert unknown.status_code == 422
    assert "connect it first" in unknown.json()["detail"]


async def test_seed_002_projects_belong_to_one_tenant(seeds: Seeds) -> None:
    api, fake, receiver = seeds.api, seeds.fake, seeds.receiver
    owner = await api.tenant()
    phone = new_phone()
    fake.add_account(phone)
    await login(api, owner, fake, phone)
    project_id = f"org-{unique('')}"
    first = await edge_post(
        api,
        owner,
        "/integration/lovable/connect",
        {"project_id": project_id, "webhook_url": receiver.url, "phone": phone},
    )
    assert first.status_code == 200, first.text

    intruder = await api.tenant()
    intruder_phone = new_phone()
    fake.add_account(intruder_phone)
    await login(api, intruder, fake, intruder_phone)
    taken = await edge_post(
        api,
        intruder,
        "/integration/lovable/connect",
        {"project_id": project_id, "webhook_url": receiver.url + "/steal", "phone": intruder_phone},
    )
    assert taken.status_code == 409
    assert "belongs to another account" in taken.json()["detail"]
    sent_before = len(fake.sent)
    send = await edge_post(
        api,
        intruder,
        "/telegram/send",
        {"project_id": project_id, "phone": intruder_phone, "to": "@someone_else", "text": "x"},
    )
    assert send.status_code == 404
    route = await api.client.put(
        f"/v1/projects/{project_id}",
        json={"telegram_send_integration_id": None},
        headers=intruder.key_headers,
    )
    assert route.status_code == 404
    assert len(fake.sent) == sent_before


async def test_seed_002_route_sends_through_a_bot_or_an_external_provider(seeds: Seeds) -> None:
    api, fake, receiver = seeds.api, seeds.fake, seeds.receiver
    tenant = await api.tenant()
    phone = new_phone()
    fake.add_account(phone)
    account = await login(api, tenant, fake, phone)
    await wait_live(api, account["id"])
    project_id = f"org-{unique('')}"
    connected = await edge_post(
        api,
        tenant,
        "/integration/lovable/connect",
        {"project_id": project_id, "webhook_url": receiver.url, "phone": phone},
    )
    assert connected.status_code == 200

    bot = seeds.sandbox.create_bot(username=unique("crmbot") + "_bot")
    user_id = 555_000_111
    seeds.sandbox.define_chat(bot.id, {"id": user_id, "type": "private", "first_name": "Ann"})
    created = await api.client.post(
        "/v1/integrations",
        json={"kind": "telegram_bot", "name": "crm bot", "credentials": {"bot_token": bot.token}},
        headers=tenant.key_headers,
    )
    assert created.status_code == 201, created.text
    bot_integration = created.json()["id"]

    routed = await api.client.put(
        f"/v1/projects/{project_id}",
        json={"telegram_send_integration_id": bot_integration},
        headers=tenant.key_headers,
    )
    assert routed.status_code == 200, routed.text
    assert routed.json()["telegram_send_integration_id"] == bot_integration
    sent_before = len(fake.sent)
    via_bot = await edge_post(
        api,
        tenant,
        "/telegram/send",
        {"project_id": project_id, "phone": phone, "to": user_id, "text": "from the bot"},
    )
    assert via_bot.status_code == 200, via_bot.text
    assert via_bot.json()["via"] == "telegram_bot"
    assert (await message_status(api, tenant, via_bot.json()["message_id"]))["status"] == "sent"
    calls = [c for c in seeds.sandbox.inspect_bot(bot.id)["calls"] if c["method"] == "sendMessage"]
    assert [c["params"]["text"] for c in calls] == ["from the bot"]
    assert len(fake.sent) == sent_before  # not from the account

    provider = await webhook_integration(api, tenant, outbound_url=receiver.url + "/provider")
    routed = await api.client.put(
        f"/v1/projects/{project_id}",
        json={"telegram_send_integration_id": provider["id"]},
        headers=tenant.key_headers,
    )
    assert routed.status_code == 200
    via_provider = await edge_post(
        api,
        tenant,
        "/telegram/send",
        {"project_id": project_id, "phone": phone, "to": "+15557654321", "text": "external"},
    )
    assert via_provider.json()["via"] == "webhook"
    assert (await message_status(api, tenant, via_provider.json()["message_id"]))["status"] == "sent"
    outbound = [json.loads(r["body"]) for r in receiver.requests if r["path"] == "/hook/provider"]
    assert len(outbound) == 1
    assert "external" in json.dumps(outbound[0])

    refused = await api.client.put(
        f"/v1/projects/{project_id}",
        json={"telegram_send_integration_id": "int_doesnotexist"},
        headers=tenant.key_headers,
    )
    assert refused.status_code == 404
    back = await api.client.put(
        f"/v1/projects/{project_id}", json={"telegram_send_integration_id": None}, headers=tenant.key_headers
    )
    assert back.json()["telegram_send_integration_id"] is None
    as_account = await edge_post(
        api,
        tenant,
        "/telegram/send",
        {"project_id": project_id, "phone": phone, "to": f"@{unique('nobody_')}", "text": "mine"},
    )
    assert as_account.json()["via"] == "telegram_user"
