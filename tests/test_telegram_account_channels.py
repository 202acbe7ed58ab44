"""A Telegram account's dialogs and the channels it administers, synced by the worker that runs
it: listed through the API, connected (only where the account may post), and posted to."""

from __future__ import annotations

from collections.abc import Callable

from chatgate.config import Settings
from chatgate.providers.telegram_user.fake import FakeTelegram
from tests.account_helpers import (
    account_api,
    account_settings,
    login,
    message_status,
    new_phone,
    wait_live,
    wait_synced,
)
from tests.conftest import unique
from tests.webhook_helpers import eventually


async def test_dialogs_and_channels_of_an_account(settings_factory: Callable[..., Settings]) -> None:
    fake = FakeTelegram()
    phone = new_phone()
    me = fake.add_account(phone, "Editor")
    friend = fake.add_user("Friend", username=unique("friend_"))
    news = fake.add_chat("channel", "News", username=unique("news_"), admins={me: ["post_messages"]})
    moderated = fake.add_chat(
        "channel", "Moderated", username=unique("moderated_"), admins={me: ["delete_messages"]}
    )
    owned = fake.add_chat("supergroup", "Owned group", creator=me)
    fake.add_chat("supergroup", "Just a member", members=[me, friend])
    await fake.deliver_message(phone, friend, "hi there")

    async with account_api(account_settings(settings_factory), fake) as api:
        tenant = await api.tenant()
        account = await login(api, tenant, fake, phone)
        await wait_live(api, account["id"])
        synced = await wait_synced(api, tenant, account["id"])

        dialogs = {d["title"]: d for d in synced["data"]}
        assert set(dialogs) == {"Friend", "News", "Moderated", "Owned group", "Just a member"}
        assert dialogs["Friend"] == {
            "id": str(friend.id),
            "kind": "private",
            "title": "Friend",
            "username": friend.username,
            "unread_count": 1,
            "is_admin": False,
            "can_post": True,
        }
        assert dialogs["News"]["kind"] == "channel"
        assert (dialogs["News"]["is_admin"], dialogs["News"]["can_post"]) == (True, True)
        assert (dialogs["Moderated"]["is_admin"], dialogs["Moderated"]["can_post"]) == (True, False)
        assert (dialogs["Just a member"]["is_admin"], dialogs["Just a member"]["can_post"]) == (False, True)

        listed = await api.client.get(
            "/v1/channels", params={"integration_id": account["id"]}, headers=tenant.key_headers
        )
        assert listed.status_code == 200
        channels = {c["title"]: c for c in listed.json()["data"]}
        assert set(channels) == {"News", "Moderated", "Owned group"}  # the ones it administers
        assert channels["News"]["external_id"] == str(news.marked_id)
        assert channels["News"]["member_status"] == "administrator"
        assert channels["News"]["rights"] == {"can_post_messages": True}
        assert (channels["News"]["can_post"], channels["News"]["connected"]) == (True, False)
        assert channels["Moderated"]["can_post"] is False
        assert channels["Owned group"]["external_id"] == str(owned.marked_id)

        connected = await api.client.post(
            "/v1/channels",
            json={"integration_id": account["id"], "chat": f"@{news.username}"},
            headers=tenant.key_headers,
        )
        assert connected.status_code == 201, connected.text
        assert connected.json()["connected"] is True
        by_id = await api.client.post(
            "/v1/channels",
            json={"integration_id": account["id"], "chat": str(owned.marked_id)},
            headers=tenant.key_headers,
        )
        assert by_id.status_code == 201, by_id.text

        refused = await api.client.post(
            "/v1/channels",
            json={"integration_id": account["id"], "chat": f"@{moderated.username}"},
            headers=tenant.key_headers,
        )
        assert refused.status_code == 422
        assert "'post_messages' right" in refused.json()["detail"]
        unknown = await api.client.post(
            "/v1/channels",
            json={"integration_id": account["id"], "chat": "@not_administered_here"},
            headers=tenant.key_headers,
        )
        assert unknown.status_code == 422
        assert "administers no channel or group" in unknown.json()["detail"]

        posted = await api.client.post(
            f"/v1/channels/{connected.json()['id']}/messages",
            json={"text": "breaking news"},
            headers=tenant.key_headers,
        )
        assert posted.status_code == 202, posted.text
        done = await message_status(api, tenant, posted.json()["message"]["id"])
        assert done["status"] == "sent", done
        record = fake.sent[-1]
        assert (record.from_phone, record.chat_id, record.text) == (phone, news.marked_id, "breaking news")
        assert done["provider_message_id"] == f"{news.marked_id}:{record.message_id}"

        # A channel made after the account went live: listed once a sync is asked for.
        later = fake.add_chat("channel", "Later", username=unique("later_"), creator=me)
        asked = await api.client.post(
            f"/v1/telegram/accounts/{account['id']}/dialogs/sync", headers=tenant.key_headers
        )
        assert asked.status_code == 202, asked.text

        async def listed_later() -> bool:
            response = await api.client.get(
                "/v1/channels", params={"integration_id": account["id"]}, headers=tenant.key_headers
            )
            return str(later.marked_id) in {c["external_id"] for c in response.json()["data"]}

        await eventually(listed_later, timeout=10)
