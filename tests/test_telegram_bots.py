"""Telegram bots end to end: connect, inbound, polling, health (docs/providers/telegram.md).

chatgate and the sandbox Bot API are both served on 127.0.0.1 and talk real HTTP: chatgate calls
`{telegram_api_base}/bot<token>/<method>`, the sandbox delivers updates to the webhook chatgate
registered (`/in/telegram/{public_id}`, with the secret header) or answers its getUpdates.
Outbound sending, rate limits and channels are in test_telegram_outbound.py; the token-leak
checks in test_telegram_secrets.py.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chatgate.config import Settings
from chatgate.providers.telegram.parsing import parse_update
from chatgate.sandbox.telegram_bot_api import SandboxBotApi
from chatgate.services.telegram_bots import ALLOWED_UPDATES
from chatgate.services.telegram_polling import lease_name
from chatgate.store.models import Integration, Lease
from tests.conftest import Api, TenantHandle
from tests.telegram_helpers import (
    SECRET_HEADER,
    UPDATES,
    Stack,
    chatgate_server,
    delivered,
    events,
    factory_in,
    raw_events,
    sandbox_server,
    settled_raw_events,
    telegram_stack,
    text_update,
    until,
)
from tests.webhook_helpers import Receiver, start_receiver, subscribe


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Webhook mode: public_base_url is chatgate's own served URL."""
    async with telegram_stack(factory_in(tmp_path_factory.mktemp("tg-webhook"))) as running:
        yield running


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    site, runner = await start_receiver()
    yield site
    await runner.cleanup()


async def integrations_of(api: Api, tenant: TenantHandle) -> list[dict[str, Any]]:
    response = await api.client.get("/v1/integrations", headers=tenant.key_headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def bot_api(stack: Stack, token: str, method: str, **params: Any) -> dict[str, Any]:
    """Call the sandbox Bot API as someone else holding the token would (behind our back)."""
    async with httpx.AsyncClient(base_url=stack.sandbox_url) as http:
        answer: dict[str, Any] = (await http.post(f"/bot{token}/{method}", json=params)).json()
    return answer


# --- 1. connect -------------------------------------------------------------------------------


async def test_connect_registers_a_webhook_without_the_token(stack: Stack) -> None:
    tenant = await stack.api.tenant()
    bot = stack.new_bot()
    created = await stack.connect(tenant, bot)
    assert created["status"] == "active", created
    assert created["config"]["bot_id"] == str(bot.id)
    assert created["config"]["username"] == bot.username
    expected_url = f"{stack.url}/in/telegram/{created['public_id']}"
    assert created["inbound_path"] == f"/in/telegram/{created['public_id']}"
    assert created["provider_status"]["mode"] == "webhook"
    assert created["provider_status"]["webhook_url"] == expected_url
    # Secrets are stored, never shown: only masked hints come back.
    assert bot.token not in json.dumps(created)
    assert set(created["credentials"]) == {"bot_token", "secret_token"}

    (call,) = stack.calls(bot.id, "setWebhook")
    params = call["params"]
    assert params["url"] == expected_url
    assert bot.token not in params["url"]
    assert str(bot.id) not in params["url"]
    assert len(params["secret_token"]) >= 32
    assert params["secret_token"] not in json.dumps(created)
    assert params["allowed_updates"] == ALLOWED_UPDATES
    assert params["max_connections"] == 40
    assert [c["method"] for c in stack.calls(bot.id)] == ["getMe", "setWebhook"]
    webhook = stack.sandbox.inspect_bot(bot.id)["webhook"]
    assert webhook["url"] == expected_url
    assert webhook["secret_token"] == params["secret_token"]
    # Stored encrypted: neither the token nor the secret is readable in the database row.
    async with stack.api.container.db.sessions() as session:
        row = await session.get(Integration, created["id"])
    assert row is not None
    assert row.credentials_sealed
    assert bot.token not in row.credentials_sealed
    assert bot.token.split(":")[1] not in row.credentials_sealed
    assert params["secret_token"] not in row.credentials_sealed


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("not a token", "not a Telegram bot token"),
        ("123:short", "not a Telegram bot token"),
        ("7999999999:SANDBOXnobody_has_this_token_0123456789", "Telegram refused this bot token (401"),
    ],
)
async def test_invalid_tokens_are_422_and_nothing_is_stored(stack: Stack, token: str, expected: str) -> None:
    tenant = await stack.api.tenant()
    response = await stack.api.client.post(
        "/v1/integrations",
        json={"kind": "telegram_bot", "name": "x", "credentials": {"bot_token": token}},
        headers=tenant.key_headers,
    )
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]
    assert token not in response.text
    assert await integrations_of(stack.api, tenant) == []


async def test_a_revoked_token_is_422(stack: Stack) -> None:
    tenant = await stack.api.tenant()
    bot = stack.new_bot()
    old = bot.token
    stack.sandbox.revoke_token(bot.id)
    response = await stack.api.client.post(
        "/v1/integrations",
        json={"kind": "telegram_bot", "name": "x", "credentials": {"bot_token": old}},
        headers=tenant.key_headers,
    )
    assert response.status_code == 422, response.text
    assert "Telegram refused this bot token (401 Unauthorized)" in response.json()["detail"]
    assert await integrations_of(stack.api, tenant) == []
    assert stack.calls(bot.id, "setWebhook") == []


async def test_one_bot_is_connected_once_across_the_installation(stack: Stack) -> None:
    tenant, other = await stack.api.tenant(), await stack.api.tenant()
    bot = stack.new_bot()
    created = await stack.connect(tenant, bot)

    again = await stack.api.client.post(
        "/v1/integrations",
        json={"kind": "telegram_bot", "name": "again", "credentials": {"bot_token": bot.token}},
        headers=tenant.key_headers,
    )
    assert again.status_code == 409, again.text
    assert created["id"] in again.json()["detail"]

    theirs = await stack.api.client.post(
        "/api/integrations/telegram/connect/", json={"bot_token": bot.token}, headers=other.key_headers
    )
    assert theirs.status_code == 409, theirs.text
    detail = theirs.json()["detail"]
    assert "another account" in detail
    assert created["id"] not in theirs.text
    assert tenant.id not in theirs.text
    assert tenant.slug not in theirs.text
    assert await integrations_of(stack.api, other) == []
    assert len(await integrations_of(stack.api, tenant)) == 1
    assert len(stack.calls(bot.id, "setWebhook")) == 1  # the refused attempts registered nothing


async def test_a_refused_webhook_leaves_status_error_with_telegrams_reason(stack: Stack) -> None:
    tenant = await stack.api.tenant()
    bot = stack.new_bot()
    reason = "Bad Request: bad webhook: Failed to resolve host: Name or service not known"
    stack.sandbox.add_fault(kind="error", bot_id=bot.id, method="setWebhook", description=reason)
    created = await stack.connect(tenant, bot)
    assert created["status"] == "error"
    assert reason in created["status_reason"]
    changed = await events(stack.api, tenant, "integration.status_changed", created["id"])
    assert [(e["data"]["previous_status"], e["data"]["status"]) for e in changed] == [("pending", "error")]
    assert reason in changed[0]["data"]["reason"]
    # The next check (here: at once) registers it, and the integration is active.
    checked = await stack.api.client.post(
        f"/v1/integrations/{created['id']}/check", headers=tenant.key_headers
    )
    assert checked.status_code == 200, checked.text
    assert checked.json()["status"] == "active"
    assert stack.sandbox.inspect_bot(bot.id)["webhook"]["url"].endswith(created["public_id"])


async def test_webhook_mode_is_refused_without_a_public_url(
    settings_factory: Callable[..., Settings],
) -> None:
    async with telegram_stack(settings_factory, webhook=False) as stack:
        tenant = await stack.api.tenant()
        bot = stack.new_bot()
        response = await stack.api.client.post(
            "/v1/integrations",
            json={
                "kind": "telegram_bot",
                "name": "x",
                "credentials": {"bot_token": bot.token},
                "config": {"mode": "webhook"},
            },
            headers=tenant.key_headers,
        )
        assert response.status_code == 422, response.text
        assert "CHATGATE_PUBLIC_BASE_URL" in response.json()["detail"]
        assert await integrations_of(stack.api, tenant) == []


async def test_seed_endpoints_connect_list_get_send_and_delete(stack: Stack) -> None:
    tenant = await stack.api.tenant()
    first, second = stack.new_bot(), stack.new_bot()
    stack.sandbox.define_chat(first.id, {"id": 4242, "type": "private", "first_name": "Ann"})
    client, headers = stack.api.client, tenant.key_headers

    connected = await client.post(
        "/api/integrations/telegram/connect/", json={"bot_token": first.token}, headers=headers
    )
    assert connected.status_code == 201, connected.text
    bot = connected.json()
    assert bot["integration_type"] == "telegram"
    assert bot["username"] == first.username
    assert bot["is_active"] is True
    assert bot["status"] == "active"
    assert bot["bot_token"].startswith("••••")
    assert first.token not in connected.text
    assert stack.sandbox.inspect_bot(first.id)["webhook"]["url"] == stack.url + bot["webhook_path"]

    created = await client.post(
        "/api/integrations/telegram/bots", json={"bot_token": second.token}, headers=headers
    )
    assert created.status_code == 201, created.text

    listed = await client.get("/api/integrations/telegram/bots", headers=headers)
    assert listed.status_code == 200
    assert sorted(b["id"] for b in listed.json()) == sorted([bot["id"], created.json()["id"]])
    got = await client.get(f"/api/integrations/telegram/bots/{bot['id']}", headers=headers)
    assert got.status_code == 200
    assert got.json()["username"] == first.username
    native = await client.get(f"/v1/integrations/{bot['id']}", headers=headers)
    assert native.json()["kind"] == "telegram_bot"

    sent = await client.post(
        f"/api/integrations/telegram/bots/{bot['id']}/send",
        json={"chat_id": 4242, "text": "<b>hello</b> from seed", "parse_mode": "HTML"},
        headers=headers,
    )
    assert sent.status_code == 202, sent.text

    async def arrived() -> list[dict[str, Any]]:
        return [m for m in stack.sandbox.chat_messages(first.id, 4242)["messages"] if m["outgoing"]]

    (message,) = await until(arrived)
    assert message["message"]["text"] == "hello from seed"
    assert message["message"]["entities"] == [{"type": "bold", "offset": 0, "length": 5}]

    deleted = await client.delete(f"/api/integrations/telegram/bots/{bot['id']}", headers=headers)
    assert deleted.status_code == 204
    assert stack.calls(first.id, "deleteWebhook")
    assert stack.sandbox.inspect_bot(first.id)["webhook"] is None
    gone = await client.get(f"/api/integrations/telegram/bots/{bot['id']}", headers=headers)
    assert gone.status_code == 404
    # The bot is free again: it can be connected anew.
    again = await client.post(
        "/api/integrations/telegram/connect/", json={"bot_token": first.token}, headers=headers
    )
    assert again.status_code == 201, again.text


# --- 2. inbound -------------------------------------------------------------------------------

# The event each parsed update must produce (once); service messages and the rest produce none.
EVENT_OF = {
    "ReceivedMessage": "message.received",
    "EditedMessage": "message.edited",
    "DeletedMessages": "message.deleted",
    "ButtonPressed": "button.pressed",
    "Reaction": "message.reaction",
    "ChatMembership": "channel.updated",
}
MAIN_EVENTS = set(EVENT_OF.values())


def _renumber(value: Any, offset: int) -> Any:
    """The samples reuse chat and message ids; give each sample its own message ids so that every
    message is new to the gateway (an id seen before is a re-delivery, correctly not re-announced)."""
    if isinstance(value, dict):
        return {
            k: (
                v + offset
                if k in ("message_id", "message_thread_id") and isinstance(v, int)
                else _renumber(v, offset)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renumber(v, offset) for v in value]
    return value


def _originals(name: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Updates that must come first for an edit or a deletion to concern a message we have."""
    edited = {
        "edited_message": "message",
        "edited_channel_post": "channel_post",
        "edited_business_message": "business_message",
    }
    (kind,) = [k for k in payload if k != "update_id"]
    if kind in edited:
        original = {k: v for k, v in payload[kind].items() if k != "edit_date"}
        original["text" if "text" in original else "caption"] = "before the edit"
        return [{edited[kind]: original}]
    if kind == "deleted_business_messages":
        deleted = payload[kind]
        return [
            {
                "business_message": {
                    "message_id": number,
                    "business_connection_id": deleted["business_connection_id"],
                    "from": {"id": deleted["chat"]["id"], "is_bot": False, "first_name": "Ann"},
                    "chat": deleted["chat"],
                    "date": 1700000000,
                    "text": f"to be deleted {number}",
                }
            }
            for number in deleted["message_ids"]
        ]
    return []


def _expected(update: dict[str, Any]) -> list[str]:
    return [
        EVENT_OF[type(e).__name__]
        for e in parse_update(json.dumps({"update_id": 1, **update}).encode())
        if type(e).__name__ in EVENT_OF
    ]


async def test_every_sample_update_is_stored_once_and_normalized_or_ignored(
    stack: Stack, receiver: Receiver
) -> None:
    tenant = await stack.api.tenant()
    endpoint = await subscribe(stack.api, tenant, receiver)
    bot = stack.new_bot()
    integration = await stack.connect(tenant, bot)
    secret = stack.sandbox.inspect_bot(bot.id)["webhook"]["secret_token"]
    samples = sorted(UPDATES.glob("*.json"))
    assert len(samples) > 100

    stored_as: dict[str, str] = {}  # update_id -> sample name
    expected: Counter[str] = Counter()
    ignored: set[str] = set()
    by_telegram: set[str] = set()
    not_requested: set[str] = set()
    for index, path in enumerate(samples):
        raw = json.loads(path.read_text("utf-8"))
        raw.pop("update_id")
        update = _renumber(raw, 1_000_000 * (index + 1))
        for original in _originals(path.stem, update):
            result = stack.sandbox.inject_update(bot.id, original)
            assert result["delivery"] == "webhook"
            stored_as[str(result["update_id"])] = f"{path.stem} (original)"
            expected.update(_expected(original))
        (kind,) = list(update)
        wanted = _expected(update)
        if kind in ALLOWED_UPDATES:
            result = stack.sandbox.inject_update(bot.id, update)
            assert result["delivery"] == "webhook", (path.name, result["delivery"])
            update_id = str(result["update_id"])
            by_telegram.add(path.stem)
        else:
            # Kinds we do not ask Telegram for (allowed_updates): the sandbox filters them, as
            # Telegram does. Posted straight to our webhook they must still be stored and ignored.
            if kind in stack.sandbox.spec.update_types:
                assert stack.sandbox.inject_update(bot.id, copy.deepcopy(update))["delivery"] == "filtered"
            not_requested.add(kind)
            update_id = str(9_000_000 + index)
            response = await stack.api.client.post(
                integration["inbound_path"],
                content=json.dumps({"update_id": int(update_id), **update}).encode(),
                headers={SECRET_HEADER: secret, "content-type": "application/json"},
            )
            assert response.status_code == 200, (path.name, response.text)
            assert response.json() == {"ok": True, "duplicate": False}
        stored_as[update_id] = path.stem
        expected.update(wanted)
        if not wanted:
            ignored.add(update_id)
    await stack.deliveries(timeout=60)
    assert not_requested == {
        "business_connection", "chat_boost", "chat_join_request", "chat_member", "chosen_inline_result",
        "guest_message", "inline_query", "managed_bot", "message_reaction_count", "poll", "poll_answer",
        "pre_checkout_query", "purchased_paid_media", "removed_chat_boost", "shipping_query", "subscription",
    }  # fmt: skip
    assert len(by_telegram) > 80

    rows = await settled_raw_events(stack.api, tenant, integration["id"], len(stored_as), timeout=60)
    by_id = {r["provider_event_id"]: r for r in rows}
    assert len(rows) == len(by_id) == len(stored_as), "every update stored exactly once"
    assert set(by_id) == set(stored_as)
    statuses = {stored_as[i]: r["status"] for i, r in by_id.items()}
    assert "parse_failed" not in statuses.values(), statuses
    for update_id, row in by_id.items():
        assert row["status"] == ("ignored" if update_id in ignored else "processed"), (
            stored_as[update_id],
            row,
        )
    assert stack.sandbox.inspect_bot(bot.id)["pending_update_count"] == 0

    # The tenant's endpoint gets each event once, and exactly the expected ones.
    assert expected["message.received"] > 30
    assert expected["button.pressed"] == 4
    assert all(expected[t] >= 1 for t in MAIN_EVENTS)

    async def main_events() -> list[dict[str, Any]] | None:
        got = [e for e in delivered(receiver, endpoint) if e["type"] in MAIN_EVENTS]
        return got if len(got) >= sum(expected.values()) else None

    got = await until(main_events, timeout=60)
    await stack.deliveries()
    got = [e for e in delivered(receiver, endpoint) if e["type"] in MAIN_EVENTS]
    assert Counter(e["type"] for e in got) == expected
    assert len({e["id"] for e in got}) == len(got), "no event delivered twice"
    edits = [e for e in got if e["type"] == "message.edited"]
    assert all(e["data"]["text"] != "before the edit" for e in edits)
    membership = next(e for e in got if e["type"] == "channel.updated")
    channels = (await stack.api.client.get("/v1/channels", headers=tenant.key_headers)).json()["data"]
    assert [c["id"] for c in channels] == [membership["data"]["id"]]
    assert channels[0]["connected"] is False


async def test_inbound_needs_the_secret_header_and_dedupes_update_ids(stack: Stack) -> None:
    tenant = await stack.api.tenant()
    bot = stack.new_bot()
    integration = await stack.connect(tenant, bot)
    secret = stack.sandbox.inspect_bot(bot.id)["webhook"]["secret_token"]
    update = text_update(4242, "hi", message_id=5)
    body = json.dumps({"update_id": 77, **update}).encode()
    path = integration["inbound_path"]
    for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: secret[:-1]}, {"x-secret": secret}):
        response = await stack.api.client.post(path, content=body, headers=headers)
        assert response.status_code == 401, response.text
        assert secret not in response.text
    assert await raw_events(stack.api, tenant, integration["id"]) == []

    first = await stack.api.client.post(path, content=body, headers={SECRET_HEADER: secret})
    again = await stack.api.client.post(path, content=body, headers={SECRET_HEADER: secret})
    assert (first.json(), again.json()) == ({"ok": True, "duplicate": False}, {"ok": True, "duplicate": True})
    # Telegram re-delivering the same update_id (its retry after a timeout) stores nothing new.
    stack.sandbox.inject_update(bot.id, {"update_id": 77, **update})
    await stack.deliveries()
    assert stack.sandbox.inspect_bot(bot.id)["pending_update_count"] == 0
    (row,) = await settled_raw_events(stack.api, tenant, integration["id"], 1)
    assert row["provider_event_id"] == "77"
    assert row["status"] == "processed"
    received = await events(stack.api, tenant, "message.received", integration["id"])
    assert len(received) == 1
    assert received[0]["data"]["provider_ids"]["message_id"] == "4242:5"


# --- 3. polling -------------------------------------------------------------------------------


def polls(stack: Stack, bot_id: int) -> list[dict[str, Any]]:
    return stack.calls(bot_id, "getUpdates")


async def received_texts(stack: Stack, tenant: TenantHandle, integration_id: str) -> list[str]:
    return [e["data"]["text"] for e in await events(stack.api, tenant, "message.received", integration_id)]


async def test_polling_mode_deletes_the_webhook_and_long_polls(
    settings_factory: Callable[..., Settings],
) -> None:
    async with telegram_stack(settings_factory, webhook=False) as stack:
        tenant = await stack.api.tenant()
        bot = stack.new_bot()
        # A webhook left over from an earlier life of the bot: polling must remove it first.
        assert (await bot_api(stack, bot.token, "setWebhook", url="http://127.0.0.1:9/stale"))["ok"]
        created = await stack.connect(tenant, bot)
        assert created["status"] == "active"
        assert created["provider_status"]["mode"] == "polling"
        assert created["provider_status"]["webhook_url"] is None
        (delete,) = stack.calls(bot.id, "deleteWebhook")
        assert delete["params"] == {"drop_pending_updates": False}
        assert stack.sandbox.inspect_bot(bot.id)["webhook"] is None

        await until(lambda: polls(stack, bot.id))
        for n in range(3):
            assert (
                stack.sandbox.inject_update(bot.id, text_update(4242, f"polled {n}"))["delivery"] == "queued"
            )
        await until(lambda: _count(received_texts(stack, tenant, created["id"]), 3), timeout=15)
        assert await received_texts(stack, tenant, created["id"]) == ["polled 0", "polled 1", "polled 2"]
        rows = await settled_raw_events(stack.api, tenant, created["id"], 3)
        assert sorted(r["provider_event_id"] for r in rows) == ["1", "2", "3"]
        # The next getUpdates confirms them (offset = last update_id + 1).
        await until(lambda: stack.sandbox.inspect_bot(bot.id)["pending_update_count"] == 0)
        await until(lambda: any(c["params"].get("offset") == 4 for c in polls(stack, bot.id)))
        assert all(c["params"]["allowed_updates"] == ALLOWED_UPDATES for c in polls(stack, bot.id))
        assert all(c["ok"] for c in polls(stack, bot.id)), "never a webhook and polling at once"
        assert stack.sandbox.inspect_bot(bot.id)["webhook"] is None

        # Disabled: the poll loop ends (within one long poll) and updates wait at Telegram.
        patched = await stack.api.client.patch(
            f"/v1/integrations/{created['id']}", json={"enabled": False}, headers=tenant.key_headers
        )
        assert patched.json()["status"] == "disabled"
        await until(lambda: created["id"] not in stack.api.container.telegram_poller.polling, timeout=5)
        before = len(polls(stack, bot.id))
        stack.sandbox.inject_update(bot.id, text_update(4242, "while disabled"))
        await asyncio.sleep(1.5)
        assert len(polls(stack, bot.id)) == before
        assert stack.sandbox.inspect_bot(bot.id)["pending_update_count"] == 1

        # Enabled again: polling resumes and picks up what waited.
        patched = await stack.api.client.patch(
            f"/v1/integrations/{created['id']}", json={"enabled": True}, headers=tenant.key_headers
        )
        assert patched.status_code == 200, patched.text
        await until(lambda: _count(received_texts(stack, tenant, created["id"]), 4), timeout=15)
        assert (await stack.integration(tenant, created["id"]))["status"] == "active"

        # Deleted: deleteWebhook once more, and no more polls.
        deleted = await stack.api.client.delete(
            f"/v1/integrations/{created['id']}", headers=tenant.key_headers
        )
        assert deleted.status_code == 204
        assert len(stack.calls(bot.id, "deleteWebhook")) >= 2
        await until(lambda: created["id"] not in stack.api.container.telegram_poller.polling, timeout=5)
        before = len(polls(stack, bot.id))
        await asyncio.sleep(1.5)
        assert len(polls(stack, bot.id)) == before


async def test_one_process_polls_at_most_its_share_of_bots(settings_factory: Callable[..., Settings]) -> None:
    """CHATGATE_TELEGRAM_POLL_MAX_BOTS: beyond it, bots wait for another worker (or webhook mode)."""
    async with telegram_stack(settings_factory, webhook=False, telegram_poll_max_bots=1) as stack:
        tenant = await stack.api.tenant()
        first, second = stack.new_bot(), stack.new_bot()
        ids = [(await stack.connect(tenant, bot))["id"] for bot in (first, second)]
        poller = stack.api.container.telegram_poller
        await until(lambda: poller.polling)
        await asyncio.sleep(0.6)  # a few more scans
        assert len(poller.polling) == 1
        polled = first if ids[0] in poller.polling else second
        idle = second if polled is first else first
        assert polls(stack, polled.id) or await until(lambda: polls(stack, polled.id))
        assert polls(stack, idle.id) == []


async def test_forced_polling_mode_and_a_webhook_set_behind_our_back(stack: Stack) -> None:
    """`config.mode = polling` on a server that has a public URL; a webhook that appears later
    (someone else used the token) makes getUpdates fail with 409, and the check removes it."""
    tenant = await stack.api.tenant()
    bot = stack.new_bot()
    created = await stack.connect(tenant, bot, mode="polling")
    assert created["provider_status"]["mode"] == "polling"
    assert stack.calls(bot.id, "setWebhook") == []
    stack.sandbox.inject_update(bot.id, text_update(4242, "first"))
    await until(lambda: _count(received_texts(stack, tenant, created["id"]), 1), timeout=15)

    assert (await bot_api(stack, bot.token, "setWebhook", url="http://127.0.0.1:9/intruder"))["ok"]
    stack.sandbox.inject_update(bot.id, text_update(4242, "second"))
    await until(lambda: stack.sandbox.inspect_bot(bot.id)["webhook"] is None, timeout=15)
    await until(lambda: _count(received_texts(stack, tenant, created["id"]), 2), timeout=15)
    assert await received_texts(stack, tenant, created["id"]) == ["first", "second"]
    conflicts = [c for c in polls(stack, bot.id) if c["error_code"] == 409]
    assert conflicts, "getUpdates met the webhook (409) and the poller repaired it"
    row = await stack.integration(tenant, created["id"])
    assert row["status"] == "active"
    assert row["provider_status"]["repaired"] == "the webhook URL registered at Telegram was not ours"
    await stack.api.client.delete(f"/v1/integrations/{created['id']}", headers=tenant.key_headers)


async def test_one_process_polls_a_bot_and_another_takes_over(
    settings_factory: Callable[..., Settings],
) -> None:
    """Two chatgate processes (two Containers) on one SQLite file: the lease lets exactly one poll."""
    async with (
        sandbox_server() as (sandbox, sandbox_url),
        chatgate_server(settings_factory, webhook=False, telegram_api_base=sandbox_url) as (first, _, _),
        chatgate_server(settings_factory, webhook=False, telegram_api_base=sandbox_url) as (second, _, _),
    ):
        await _one_poller(sandbox, first, second)


async def _one_poller(sandbox: SandboxBotApi, first: Api, second: Api) -> None:
    owners = {first.container.worker_id: first, second.container.worker_id: second}
    tenant = await first.tenant()
    bot = sandbox.create_bot()
    response = await first.client.post(
        "/v1/integrations",
        json={"kind": "telegram_bot", "name": "shared", "credentials": {"bot_token": bot.token}},
        headers=tenant.key_headers,
    )
    assert response.status_code == 201, response.text
    integration_id = response.json()["id"]

    async def holder() -> str | None:
        async with first.container.db.sessions() as session:
            row = (
                await session.execute(select(Lease).where(Lease.name == lease_name(integration_id)))
            ).scalar_one_or_none()
        return row.owner if row is not None else None

    owner_id = await until(holder)
    owner = owners[owner_id]
    other = first if owner is second else second
    for _ in range(8):  # a few scan rounds of both processes
        await asyncio.sleep(0.25)
        assert integration_id in owner.container.telegram_poller.polling
        assert integration_id not in other.container.telegram_poller.polling
        assert await holder() == owner_id
    calls = sandbox.inspect_bot(bot.id)["calls"]
    updates_calls = [c for c in calls if c["method"] == "getUpdates"]
    assert updates_calls
    # Two pollers of one bot would terminate each other's long polls with 409.
    assert all(c["ok"] for c in updates_calls), [c["description"] for c in updates_calls if not c["ok"]]
    sandbox.inject_update(bot.id, text_update(4242, "to the owner"))
    await until(lambda: _count(_texts(owner, tenant, integration_id), 1), timeout=10)

    # The owner stops (its lease is released on the way out): the other process takes over.
    owner.container.telegram_poller.max_bots = 0  # this process stays out from now on
    await owner.container.telegram_poller.stop_all()
    await until(lambda: integration_id in other.container.telegram_poller.polling, timeout=10)
    assert await holder() == other.container.worker_id
    sandbox.inject_update(bot.id, text_update(4242, "to the successor"))
    await until(lambda: _count(_texts(other, tenant, integration_id), 2), timeout=10)

    # A crashed owner releases nothing: its lease must expire before anyone polls again.
    other.container.telegram_poller.max_bots = 0
    await other.container.telegram_poller.stop_all()
    async with first.container.db.transaction() as session:
        session.add(
            Lease(
                name=lease_name(integration_id),
                owner="crashed-process",
                expires_at=datetime.now(UTC) + timedelta(seconds=1.5),
                acquired_at=datetime.now(UTC),
            )
        )
    owner.container.telegram_poller.max_bots = 500
    await asyncio.sleep(0.8)
    assert integration_id not in owner.container.telegram_poller.polling
    await until(lambda: integration_id in owner.container.telegram_poller.polling, timeout=10)
    assert await holder() == owner_id


async def _texts(api: Api, tenant: TenantHandle, integration_id: str) -> list[str]:
    return [e["data"]["text"] for e in await events(api, tenant, "message.received", integration_id)]


async def _count(texts: Any, n: int) -> bool:
    return len(await texts) >= n


# --- 4. health --------------------------------------------------------------------------------


async def check(stack: Stack, tenant: TenantHandle, integration_id: str) -> dict[str, Any]:
    response = await stack.api.client.post(
        f"/v1/integrations/{integration_id}/check", headers=tenant.key_headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_check_repairs_a_webhook_url_changed_behind_our_back(stack: Stack) -> None:
    tenant = await stack.api.tenant()
    bot = stack.new_bot()
    created = await stack.connect(tenant, bot)
    ours = stack.sandbox.inspect_bot(bot.id)["webhook"]
    assert (
        await bot_api(stack, bot.token, "setWebhook", url="http://127.0.0.1:9/other", secret_token="theirs")
    )["ok"]
    checked = await check(stack, tenant, created["id"])
    assert checked["status"] == "active"
    status = checked["provider_status"]
    assert status["repaired"] == "the webhook URL registered at Telegram was not ours"
    assert status["webhook_url"] == ours["url"], "provider_status shows Telegram's view after the repair"
    assert status["mode"] == "webhook"
    assert status["checked_at"]
    now = stack.sandbox.inspect_bot(bot.id)["webhook"]
    assert (now["url"], now["secret_token"]) == (ours["url"], ours["secret_token"])
    # Nothing to repair now: a second check leaves the webhook alone.
    calls = len(stack.calls(bot.id, "setWebhook"))
    again = await check(stack, tenant, created["id"])
    assert again["status"] == "active"
    assert len(stack.calls(bot.id, "setWebhook")) == calls


async def test_refused_deliveries_show_in_provider_status_and_the_secret_is_repaired(stack: Stack) -> None:
    tenant = await stack.api.tenant()
    bot = stack.new_bot()
    created = await stack.connect(tenant, bot)
    ours = stack.sandbox.inspect_bot(bot.id)["webhook"]
    # Our URL with an out-of-date secret: our endpoint refuses every delivery with 401.
    assert (await bot_api(stack, bot.token, "setWebhook", url=ours["url"], secret_token="out-of-date"))["ok"]
    stack.sandbox.inject_update(bot.id, text_update(4242, "waiting at Telegram"))
    await stack.deliveries()
    info = stack.sandbox.inspect_bot(bot.id)["webhook"]
    assert info["last_error_message"] == "Wrong response from the webhook: 401 Unauthorized"
    assert await raw_events(stack.api, tenant, created["id"]) == []

    checked = await check(stack, tenant, created["id"])
    status = checked["provider_status"]
    assert status["last_error_message"] == "Wrong response from the webhook: 401 Unauthorized"
    assert status["last_error_date"] == info["last_error_date"]
    assert status["pending_update_count"] == 1
    assert status["repaired"].startswith("Telegram's last delivery was refused by us")
    assert stack.sandbox.inspect_bot(bot.id)["webhook"]["secret_token"] == ours["secret_token"]
    await stack.deliveries()
    (row,) = await settled_raw_events(stack.api, tenant, created["id"], 1)
    assert row["status"] == "processed"
    # The reported error is old news now: no second repair.
    calls = len(stack.calls(bot.id, "setWebhook"))
    again = await check(stack, tenant, created["id"])
    assert again["provider_status"]["pending_update_count"] == 0
    assert len(stack.calls(bot.id, "setWebhook")) == calls


async def test_the_periodic_sweep_repairs_without_being_asked(
    settings_factory: Callable[..., Settings],
) -> None:
    async with telegram_stack(settings_factory, telegram_health_interval_seconds=1) as stack:
        tenant = await stack.api.tenant()
        bot = stack.new_bot()
        created = await stack.connect(tenant, bot)
        ours = stack.sandbox.inspect_bot(bot.id)["webhook"]["url"]
        assert (await bot_api(stack, bot.token, "setWebhook", url="http://127.0.0.1:9/other"))["ok"]
        await until(lambda: stack.sandbox.inspect_bot(bot.id)["webhook"]["url"] == ours, timeout=10)

        async def reported() -> dict[str, Any] | None:
            row = await stack.integration(tenant, created["id"])
            return row if "repaired" in row["provider_status"] else None

        row = await until(reported)
        assert row["provider_status"]["repaired"] == "the webhook URL registered at Telegram was not ours"
        assert row["provider_status"]["webhook_url"] == ours
        assert row["status"] == "active"


async def test_a_revoked_token_needs_reauth_until_reconnected(stack: Stack) -> None:
    tenant = await stack.api.tenant()
    bot, stranger = stack.new_bot(), stack.new_bot()
    created = await stack.connect(tenant, bot)
    stack.sandbox.revoke_token(bot.id)
    checked = await check(stack, tenant, created["id"])
    assert checked["status"] == "needs_reauth"
    assert "401" in checked["status_reason"]
    changed = await events(stack.api, tenant, "integration.status_changed", created["id"])
    assert [(e["data"]["previous_status"], e["data"]["status"]) for e in changed] == [
        ("pending", "active"),
        ("active", "needs_reauth"),
    ]

    path = f"/v1/integrations/{created['id']}/reconnect"
    wrong_bot = await stack.api.client.post(
        path, json={"bot_token": stranger.token}, headers=tenant.key_headers
    )
    assert wrong_bot.status_code == 422
    assert "another bot" in wrong_bot.json()["detail"]
    old = await stack.api.client.post(
        path, json={"bot_token": "x" + bot.token[1:]}, headers=tenant.key_headers
    )
    assert old.status_code == 422
    assert (await stack.integration(tenant, created["id"]))["status"] == "needs_reauth"

    new_token = stack.sandbox.bot(bot.id).token  # BotFather's /revoke issued it
    reconnected = await stack.api.client.post(path, json={"bot_token": new_token}, headers=tenant.key_headers)
    assert reconnected.status_code == 200, reconnected.text
    assert reconnected.json()["status"] == "active"
    assert new_token not in reconnected.text
    last = stack.calls(bot.id)[-1]
    assert last["method"] == "setWebhook"
    assert last["ok"]
    changed = await events(stack.api, tenant, "integration.status_changed", created["id"])
    assert [e["data"]["status"] for e in changed] == ["active", "needs_reauth", "pending", "active"]
    stack.sandbox.inject_update(bot.id, text_update(4242, "after the reconnect"))
    await stack.deliveries()
    assert (await settled_raw_events(stack.api, tenant, created["id"], 1))[0]["status"] == "processed"
