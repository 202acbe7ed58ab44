"""Live traffic of a Telegram user account against the FakeTelegram, through the real pipeline:
private, group, supergroup and channel messages, edits, deletions and read receipts become
events (once each, even when Telegram sends an update again); the account sends by @username, id
and phone number (importing the contact), replies, marks messages read, and a FloodWait pauses
its sends for the time asked without losing any."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatgate.providers.telegram_user.fake import FakeTelegram, FakeUser
from tests.account_helpers import (
    ACCOUNT_SETTINGS,
    account_api,
    events,
    login,
    message_status,
    new_phone,
    wait_live,
)
from tests.conftest import Api, TenantHandle, make_settings, unique
from tests.webhook_helpers import eventually


@dataclass
class World:
    fake: FakeTelegram
    api: Api
    tenant: TenantHandle
    account_id: str
    phone: str

    def user(self, name: str, **kwargs: Any) -> FakeUser:
        return self.fake.add_user(name, username=unique(name.lower() + "_"), **kwargs)

    async def events(self, types: str) -> list[dict[str, Any]]:
        return await events(self.api, self.tenant, types, self.account_id)

    async def received(self, text: str, *, count: int = 1) -> list[dict[str, Any]]:
        async def check() -> list[dict[str, Any]] | None:
            found = [e for e in await self.events("message.received") if e["data"]["text"] == text]
            return found if len(found) >= count else None

        found: list[dict[str, Any]] = await eventually(check, timeout=15)
        return found

    async def send(self, **body: Any) -> dict[str, Any]:
        response = await self.api.client.post(
            "/v1/messages", json={"integration_id": self.account_id, **body}, headers=self.tenant.key_headers
        )
        assert response.status_code == 202, response.text
        result: dict[str, Any] = response.json()["message"]
        return result

    async def sent(self, message_id: str) -> dict[str, Any]:
        found = await message_status(self.api, self.tenant, message_id)
        assert found["status"] == "sent", found
        return found

    async def settle(self) -> None:
        """Until every stored update of the account is processed."""

        async def check() -> bool:
            response = await self.api.client.get(
                "/v1/raw-events",
                params={"integration_id": self.account_id, "limit": 200},
                headers=self.tenant.key_headers,
            )
            return all(r["status"] != "pending" for r in response.json()["data"])

        await eventually(check, timeout=15)


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    fake = FakeTelegram()
    tmp: Path = tmp_path_factory.mktemp("accounts-traffic")
    async with account_api(make_settings(tmp, None, **ACCOUNT_SETTINGS), fake) as api:
        tenant = await api.tenant()
        phone = new_phone()
        fake.add_account(phone, "Agent", username=unique("agent_"))
        account = await login(api, tenant, fake, phone)
        await wait_live(api, account["id"])
        yield World(fake, api, tenant, account["id"], phone)


async def test_private_group_and_channel_messages(world: World) -> None:
    alice = world.user("Alice")
    await world.fake.deliver_message(world.phone, alice, "hello in private")
    group = await world.fake.deliver_message(world.phone, alice, "hello in a group", chat_kind="group")
    supergroup = await world.fake.deliver_message(
        world.phone, alice, "hello in a supergroup", chat_kind="supergroup"
    )
    channel = await world.fake.deliver_message(world.phone, None, "a channel post", chat_kind="channel")

    private = (await world.received("hello in private"))[0]["data"]
    assert private["direction"] == "inbound"
    assert private["provider"] == "telegram_user"
    assert private["sender"] == {
        "address": str(alice.id),
        "display_name": "Alice",
        "username": alice.username,
    }
    assert private["provider_ids"]["chat_id"] == str(alice.id)
    in_group = (await world.received("hello in a group"))[0]["data"]
    assert in_group["provider_ids"] == {
        "message_id": f"{group.chat_id}:{group.message_id}",
        "chat_id": str(group.chat_id),
        "sender_id": str(alice.id),
    }
    in_supergroup = (await world.received("hello in a supergroup"))[0]["data"]
    assert in_supergroup["provider_ids"]["chat_id"] == str(supergroup.chat_id)
    assert str(supergroup.chat_id).startswith("-100")
    post = (await world.received("a channel post"))[0]["data"]
    assert post["provider_ids"]["chat_id"] == str(channel.chat_id)

    kinds = {e["data"]["external_id"]: e["data"]["kind"] for e in await world.events("conversation.created")}
    assert kinds[str(alice.id)] == "private"
    assert kinds[str(group.chat_id)] == "group"
    assert kinds[str(supergroup.chat_id)] == "group"
    assert kinds[str(channel.chat_id)] == "channel"


async def test_updates_sent_twice_become_one_event(world: World) -> None:
    bob = world.user("Bob")
    await world.fake.deliver_message(world.phone, bob, "only once please")
    await world.received("only once please")
    await world.fake.redeliver(world.phone)  # Telegram sends the same update again
    await world.fake.redeliver(world.phone)
    await world.settle()
    await asyncio.sleep(0.3)
    found = [e for e in await world.events("message.received") if e["data"]["text"] == "only once please"]
    assert len(found) == 1


async def test_edits_and_a_change_that_is_no_edit(world: World) -> None:
    carol = world.user("Carol")
    delivered = await world.fake.deliver_message(world.phone, carol, "typo")
    message = (await world.received("typo"))[0]["data"]
    await world.fake.edit(world.phone, delivered.chat_id, delivered.message_id, "fixed")

    async def edited() -> list[dict[str, Any]]:
        return [e for e in await world.events("message.edited") if e["data"]["id"] == message["id"]]

    found = (await eventually(edited))[0]["data"]
    assert found["text"] == "fixed"
    await world.fake.redeliver(world.phone)  # the edit again
    await world.fake.edit(world.phone, delivered.chat_id, delivered.message_id, None)  # a reaction
    await world.settle()
    assert len(await edited()) == 1
    got = await world.api.client.get(f"/v1/messages/{message['id']}", headers=world.tenant.key_headers)
    assert got.json()["text"] == "fixed"
    assert got.json()["edited_at"] is not None


async def test_deletions_in_supergroups_and_private_chats(world: World) -> None:
    dave = world.user("Dave")
    supergroup = world.fake.add_chat("supergroup", "Team", members=[dave])
    in_group = await world.fake.deliver_message(world.phone, dave, "delete me (group)", chat=supergroup)
    in_private = await world.fake.deliver_message(world.phone, dave, "delete me (private)")
    group_message = (await world.received("delete me (group)"))[0]["data"]
    private_message = (await world.received("delete me (private)"))[0]["data"]

    await world.fake.delete(world.phone, in_group.chat_id, [in_group.message_id])
    # Telegram does not say in which private chat a deleted message was: the runtime places it.
    await world.fake.delete(world.phone, in_private.chat_id, [in_private.message_id])

    async def deleted(message_id: str) -> list[dict[str, Any]]:
        return [e for e in await world.events("message.deleted") if message_id in e["data"]["message_ids"]]

    assert (await eventually(lambda: deleted(group_message["id"])))[0]["data"]["provider_message_ids"] == [
        f"{in_group.chat_id}:{in_group.message_id}"
    ]
    placed = (await eventually(lambda: deleted(private_message["id"])))[0]["data"]
    assert placed["provider_message_ids"] == [f"{in_private.chat_id}:{in_private.message_id}"]


async def test_send_by_username_id_and_phone_reply_and_mark_read(world: World) -> None:
    erin = world.user("Erin")
    by_name = await world.send(to=f"@{erin.username}", text="hi by username")
    await world.sent(by_name["id"])
    assert world.fake.sent[-1].chat_id == erin.id

    frank = world.user("Frank")
    delivered = await world.fake.deliver_message(world.phone, frank, "write back please")
    incoming = (await world.received("write back please"))[0]["data"]
    by_id = await world.send(to=str(frank.id), text="hi by id")
    await world.sent(by_id["id"])
    assert (world.fake.sent[-1].chat_id, world.fake.sent[-1].text) == (frank.id, "hi by id")

    reply = await world.send(
        conversation_id=incoming["conversation_id"], text="a reply", reply_to_message_id=incoming["id"]
    )
    await world.sent(reply["id"])
    assert (world.fake.sent[-1].reply_to, world.fake.sent[-1].text) == (delivered.message_id, "a reply")

    marked = await world.api.client.post(
        f"/v1/messages/{incoming['id']}/read", headers=world.tenant.key_headers
    )
    assert marked.status_code == 200, marked.text
    assert world.fake.read_marks[-1].chat_id == frank.id
    assert world.fake.read_marks[-1].max_id == delivered.message_id

    number = new_phone()
    grace = world.fake.add_user("Grace", phone=number)
    by_phone = await world.send(to=number, text="hi by phone")
    await world.sent(by_phone["id"])
    assert world.fake.sent[-1].chat_id == grace.id
    assert (world.phone, number) in world.fake.imported_contacts

    unknown = await world.send(to="@nobody_has_this_name", text="lost")
    failed = await message_status(world.api, world.tenant, unknown["id"])
    assert failed["status"] == "failed"
    assert failed["error_message"] == "no Telegram user or chat has this username"


async def test_read_receipts_mark_every_message_up_to_max_id(world: World) -> None:
    heidi = world.user("Heidi")
    await world.fake.deliver_message(world.phone, heidi, "say something")
    conversation_id = (await world.received("say something"))[0]["data"]["conversation_id"]
    first = await world.send(conversation_id=conversation_id, text="one")
    first = await world.sent(first["id"])
    second = await world.send(conversation_id=conversation_id, text="two")
    second = await world.sent(second["id"])
    max_id = int(second["provider_message_id"].split(":")[1])
    await world.fake.read_outbox(world.phone, heidi.id, max_id)  # "read up to `two`"

    async def read(message_id: str) -> bool:
        got = await world.api.client.get(f"/v1/messages/{message_id}", headers=world.tenant.key_headers)
        return bool(got.json()["status"] == "read")

    await eventually(lambda: read(second["id"]))
    await eventually(lambda: read(first["id"]))
    statuses = [
        e["data"]["message_id"] for e in await world.events("message.status") if e["data"]["status"] == "read"
    ]
    assert statuses.count(first["id"]) == 1
    assert statuses.count(second["id"]) == 1


async def test_flood_wait_pauses_the_account_and_loses_nothing(world: World) -> None:
    ivan = world.user("Ivan")
    await world.fake.deliver_message(world.phone, ivan, "flood me")
    conversation_id = (await world.received("flood me"))[0]["data"]["conversation_id"]
    wait = 2
    world.fake.set_flood_wait(wait, "send_message")
    sent_before = len(world.fake.sent)
    started = time.monotonic()
    accepted = [await world.send(conversation_id=conversation_id, text=f"burst {i}") for i in range(3)]
    done = [await world.sent(a["id"]) for a in accepted]
    elapsed = time.monotonic() - started
    texts = [r.text for r in world.fake.sent[sent_before:]]
    assert sorted(texts) == ["burst 0", "burst 1", "burst 2"]  # each once, none lost
    assert elapsed >= wait, f"the sends resumed after {elapsed:.2f} s, before the {wait} s asked"
    assert elapsed < wait + 8
    assert all(d["status"] == "sent" for d in done)
