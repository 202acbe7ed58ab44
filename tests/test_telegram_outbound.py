"""Telegram bots end to end, outbound: sends, edits, actions, media, rate limits and channels.

chatgate calls the sandbox Bot API over real HTTP (docs/providers/telegram.md, "Outbound" and
"Channels and groups"); the sandbox records every call and every message a chat holds.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import qrcode

from chatgate.config import Settings
from chatgate.providers.telegram.text import utf16_len
from chatgate.sandbox.telegram_bot_api.state import Bot
from tests.conftest import TenantHandle
from tests.telegram_helpers import (
    Stack,
    events,
    factory_in,
    file_host,
    message_status,
    telegram_stack,
    text_update,
    until,
)

# Fast per-chat budgets for this module's stack, so that tests sending a few messages to one chat
# are not paced at Telegram's 1 message/s; the pacing itself is tested with its own stack below.
FAST = {"telegram_bot": {"bot": [200, 50], "chat": [100, 20], "group": [100, 20]}}
USER = 4242


def _png() -> bytes:
    buffer = io.BytesIO()
    qrcode.make("chatgate").save(buffer)  # any small, valid PNG
    return buffer.getvalue()


PNG = _png()


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = factory_in(tmp_path_factory.mktemp("tg-outbound"))
    async with telegram_stack(settings, rate_limit_policies=FAST, media_fetch_max_bytes=100_000) as running:
        yield running


async def connected(stack: Stack, **chats: Any) -> tuple[TenantHandle, Bot, dict[str, Any]]:
    tenant = await stack.api.tenant()
    bot = stack.new_bot()
    stack.sandbox.define_chat(bot.id, {"id": USER, "type": "private", "first_name": "Ann"})
    integration = await stack.connect(tenant, bot)
    return tenant, bot, integration


async def send(stack: Stack, tenant: TenantHandle, **body: Any) -> dict[str, Any]:
    response = await stack.api.client.post("/v1/messages", json=body, headers=tenant.key_headers)
    assert response.status_code == 202, response.text
    message: dict[str, Any] = response.json()["message"]
    return message


async def sent(stack: Stack, tenant: TenantHandle, **body: Any) -> dict[str, Any]:
    """Send and wait for the outcome (sent or failed)."""
    message = await send(stack, tenant, **body)
    return await message_status(stack.api, tenant, message["id"])


def outgoing(stack: Stack, bot: Bot, chat: int) -> list[dict[str, Any]]:
    return [m for m in stack.sandbox.chat_messages(bot.id, chat)["messages"] if m["outgoing"]]


async def inbound(stack: Stack, tenant: TenantHandle, bot: Bot, update: dict[str, Any]) -> dict[str, Any]:
    """Inject an update and return the message.received event it produced."""
    before = len(await events(stack.api, tenant, "message.received"))
    stack.sandbox.inject_update(bot.id, update)

    async def arrived() -> list[dict[str, Any]] | None:
        found = await events(stack.api, tenant, "message.received")
        return found if len(found) > before else None

    found = await until(arrived)
    event: dict[str, Any] = found[-1]
    return event


# --- 5. outbound ------------------------------------------------------------------------------


async def test_text_with_parse_mode_buttons_and_reply(stack: Stack) -> None:
    tenant, bot, integration = await connected(stack)
    message = await sent(
        stack,
        tenant,
        integration_id=integration["id"],
        to=str(USER),
        text="<b>Hello</b> <i>there</i>",
        parse_mode="HTML",
        buttons=[
            [{"text": "Yes", "callback_data": "yes"}, {"text": "Docs", "url": "https://example.com/docs"}]
        ],
    )
    assert message["status"] == "sent", message
    (stored,) = outgoing(stack, bot, USER)
    number = stored["message_id"]
    assert message["provider_message_id"] == f"{USER}:{number}"
    assert stored["message"]["text"] == "Hello there"
    assert stored["message"]["entities"] == [
        {"type": "bold", "offset": 0, "length": 5},
        {"type": "italic", "offset": 6, "length": 5},
    ]
    assert stored["message"]["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Yes", "callback_data": "yes"}, {"text": "Docs", "url": "https://example.com/docs"}]
        ]
    }
    (call,) = stack.calls(bot.id, "sendMessage")
    assert call["params"]["parse_mode"] == "HTML"

    # A reply to the user's message, in MarkdownV2.
    received = await inbound(stack, tenant, bot, text_update(USER, "a question"))
    reply = await sent(
        stack,
        tenant,
        conversation_id=received["conversation_id"],
        text="*an answer*",
        parse_mode="MarkdownV2",
        reply_to_message_id=received["data"]["id"],
    )
    assert reply["status"] == "sent", reply
    assert reply["reply_to_message_id"] == received["data"]["id"]
    answer = outgoing(stack, bot, USER)[-1]["message"]
    assert answer["text"] == "an answer"
    assert answer["entities"] == [{"type": "bold", "offset": 0, "length": 9}]
    telegram_id = int(received["data"]["provider_ids"]["message_id"].split(":")[1])
    assert answer["reply_to_message"]["message_id"] == telegram_id
    assert answer["reply_to_message"]["text"] == "a question"


async def test_a_long_text_is_split_and_every_part_arrives_in_order(stack: Stack) -> None:
    tenant, bot, integration = await connected(stack)
    # 🙂 is two UTF-16 units: 3000 characters of it are 6000 units, over Telegram's 4096.
    paragraphs = [f"Paragraph {n}. " + "🙂 word " * 300 for n in range(6)]
    text = "\n\n".join(paragraphs)
    assert utf16_len(text) > 3 * 4096
    message = await sent(stack, tenant, integration_id=integration["id"], to=str(USER), text=text)
    assert message["status"] == "sent", message
    parts = [m["message"]["text"] for m in outgoing(stack, bot, USER)]
    assert len(parts) >= 4
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split()), "nothing lost, nothing reordered"
    assert all(p.startswith("Paragraph") for p in parts), "cut at paragraph ends"
    numbers = [m["message_id"] for m in outgoing(stack, bot, USER)]
    assert numbers == sorted(numbers)
    assert message["provider_message_id"] == f"{USER}:{numbers[0]}"


async def test_attachments_by_url_and_by_upload(stack: Stack) -> None:
    tenant, bot, integration = await connected(stack)
    report = b"%PDF-1.4 a small report"
    async with file_host({"cat.png": (PNG, "image/png")}) as host:
        photo = await sent(
            stack,
            tenant,
            integration_id=integration["id"],
            to=str(USER),
            text="a <b>cat</b>",
            parse_mode="HTML",
            attachments=[{"kind": "image", "url": f"{host}/cat.png"}],
        )
    assert photo["status"] == "sent", photo
    (call,) = stack.calls(bot.id, "sendPhoto")
    assert call["params"]["photo"] == f"{host}/cat.png"
    stored = outgoing(stack, bot, USER)[-1]["message"]
    assert stored["caption"] == "a cat"
    assert stored["caption_entities"] == [{"type": "bold", "offset": 2, "length": 3}]
    file_id = stored["photo"][-1]["file_id"]
    assert stack.sandbox.state.files[file_id].data == PNG  # Telegram fetched our URL

    uploaded = await stack.api.client.post(
        "/v1/media",
        files={"file": ("report.pdf", report, "application/pdf")},
        headers=tenant.key_headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    document = await sent(
        stack,
        tenant,
        integration_id=integration["id"],
        to=str(USER),
        text="the report",
        attachments=[{"kind": "document", "media_id": uploaded.json()["id"]}],
    )
    assert document["status"] == "sent", document
    (call,) = stack.calls(bot.id, "sendDocument")
    assert call["params"]["document"] == {
        "file_name": "report.pdf",
        "content_type": "application/pdf",
        "size": len(report),
    }
    stored = outgoing(stack, bot, USER)[-1]["message"]
    assert stored["caption"] == "the report"
    assert stored["document"]["file_name"] == "report.pdf"
    assert stored["document"]["file_size"] == len(report)
    assert stack.sandbox.state.files[stored["document"]["file_id"]].data == report

    # And the other way round: a photo uploaded, a document by URL; two attachments, one caption.
    picture = await stack.api.client.post(
        "/v1/media", files={"file": ("cat.png", PNG, "image/png")}, headers=tenant.key_headers
    )
    async with file_host({"notes.txt": (b"some notes", "text/plain")}) as host:
        both = await sent(
            stack,
            tenant,
            integration_id=integration["id"],
            to=str(USER),
            text="two files",
            attachments=[
                {"kind": "image", "media_id": picture.json()["id"]},
                {"kind": "document", "url": f"{host}/notes.txt"},
            ],
        )
    assert both["status"] == "sent", both
    photo_message, notes_message = [m["message"] for m in outgoing(stack, bot, USER)[-2:]]
    assert stack.sandbox.state.files[photo_message["photo"][-1]["file_id"]].data == PNG
    assert photo_message["caption"] == "two files"
    assert notes_message["document"]["file_name"] == "notes.txt"
    assert "caption" not in notes_message
    assert stack.sandbox.state.files[notes_message["document"]["file_id"]].data == b"some notes"


async def test_edit_delete_chat_action_and_button_answer(stack: Stack) -> None:
    tenant, bot, integration = await connected(stack)
    headers = tenant.key_headers
    message = await sent(
        stack,
        tenant,
        integration_id=integration["id"],
        to=str(USER),
        text="original",
        buttons=[[{"text": "Press", "callback_data": "pressed"}]],
    )
    number = int(message["provider_message_id"].split(":")[1])

    edited = await stack.api.client.patch(
        f"/v1/messages/{message['id']}", json={"text": "edited"}, headers=headers
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["text"] == "edited"
    assert edited.json()["edited_at"]
    held = stack.sandbox.chat_messages(bot.id, USER)["messages"][-1]["message"]
    assert held["text"] == "edited"
    assert held["edit_date"]
    assert held["reply_markup"] == {"inline_keyboard": [[{"text": "Press", "callback_data": "pressed"}]]}
    rebuttoned = await stack.api.client.patch(
        f"/v1/messages/{message['id']}",
        json={"buttons": [[{"text": "Other", "callback_data": "o"}]]},
        headers=headers,
    )
    assert rebuttoned.status_code == 200, rebuttoned.text
    assert stack.calls(bot.id, "editMessageReplyMarkup")[-1]["params"]["message_id"] == number
    held = stack.sandbox.chat_messages(bot.id, USER)["messages"][-1]["message"]
    assert held["reply_markup"] == {"inline_keyboard": [[{"text": "Other", "callback_data": "o"}]]}
    # Telegram's refusal comes back as a clear 4xx with its reason.
    same = await stack.api.client.patch(
        f"/v1/messages/{message['id']}", json={"text": "edited"}, headers=headers
    )
    assert same.status_code == 422, same.text
    assert "message is not modified" in same.json()["detail"]

    # A button press reaches the tenant as button.pressed; the answer goes back to Telegram.
    stack.sandbox.inject_update(
        bot.id,
        {
            "callback_query": {
                "id": "cbq-1",
                "from": {"id": USER, "is_bot": False, "first_name": "Ann"},
                "chat_instance": "1",
                "data": "o",
                "message": stack.sandbox.chat_messages(bot.id, USER)["messages"][-1]["message"],
            }
        },
    )
    (pressed,) = await until(lambda: events(stack.api, tenant, "button.pressed", integration["id"]))
    assert pressed["data"]["callback_id"] == "cbq-1"
    assert pressed["data"]["data"] == "o"
    assert pressed["data"]["message_id"] == message["id"]
    answer_path = f"/v1/integrations/{integration['id']}/button-answers"
    answered = await stack.api.client.post(
        answer_path, json={"callback_id": "cbq-1", "text": "Done"}, headers=headers
    )
    assert answered.status_code == 204, answered.text
    assert stack.calls(bot.id, "answerCallbackQuery")[-1]["params"] == {
        "callback_query_id": "cbq-1",
        "text": "Done",
        "show_alert": False,
    }
    twice = await stack.api.client.post(answer_path, json={"callback_id": "cbq-1"}, headers=headers)
    assert twice.status_code == 422
    assert "query is too old" in twice.json()["detail"]

    typing = await stack.api.client.post(
        f"/v1/conversations/{message['conversation_id']}/actions", json={"action": "typing"}, headers=headers
    )
    assert typing.status_code == 204, typing.text
    assert stack.calls(bot.id, "sendChatAction")[-1]["params"] == {"chat_id": str(USER), "action": "typing"}

    deleted = await stack.api.client.delete(f"/v1/messages/{message['id']}", headers=headers)
    assert deleted.status_code == 200
    assert deleted.json()["deleted_at"]
    assert stack.sandbox.chat_messages(bot.id, USER)["messages"][-1]["deleted"] is True
    again = await stack.api.client.delete(f"/v1/messages/{message['id']}", headers=headers)
    assert again.status_code == 422


async def test_blocked_user_unknown_chat_and_revoked_token_fail_with_telegrams_reason(stack: Stack) -> None:
    tenant, bot, integration = await connected(stack)
    received = await inbound(stack, tenant, bot, text_update(USER, "hello"))
    stack.sandbox.define_chat(bot.id, {"id": USER, "type": "private", "first_name": "Ann", "blocked": True})
    blocked = await sent(stack, tenant, conversation_id=received["conversation_id"], text="are you there?")
    assert blocked["status"] == "failed"
    assert blocked["error_message"] == "Telegram: Forbidden: bot was blocked by the user"
    contact = await stack.api.client.get(f"/v1/contacts/{blocked['contact_id']}", headers=tenant.key_headers)
    assert contact.json()["unreachable"] is True
    assert len(stack.calls(bot.id, "sendMessage")) == 1, "a 403 is not retried"

    unknown = await sent(stack, tenant, integration_id=integration["id"], to="999", text="hello?")
    assert unknown["status"] == "failed"
    assert unknown["error_message"] == "Telegram: Bad Request: chat not found"
    assert len(stack.calls(bot.id, "sendMessage")) == 2, "chat not found is permanent"

    stack.sandbox.revoke_token(bot.id)
    stack.sandbox.define_chat(bot.id, {"id": USER, "type": "private", "first_name": "Ann"})
    revoked = await sent(stack, tenant, integration_id=integration["id"], to=str(USER), text="anyone?")
    assert revoked["status"] == "failed"
    assert (await stack.integration(tenant, integration["id"]))["status"] == "needs_reauth"
    changed = await events(stack.api, tenant, "integration.status_changed", integration["id"])
    assert changed[-1]["data"]["status"] == "needs_reauth"
    refused = await stack.api.client.post(
        "/v1/messages",
        json={"integration_id": integration["id"], "to": str(USER), "text": "x"},
        headers=tenant.key_headers,
    )
    assert refused.status_code == 409
    assert "reconnect" in refused.json()["detail"]


async def test_a_migrated_group_is_followed_and_the_conversation_re_pointed(stack: Stack) -> None:
    tenant, bot, _ = await connected(stack)
    group, supergroup = -4242, -1004242
    stack.sandbox.define_chat(bot.id, {"id": group, "type": "group", "title": "Team"})
    received = await inbound(
        stack, tenant, bot, text_update(group, "hi all", user_id=USER, chat_type="group")
    )
    conversation_id = received["conversation_id"]
    stack.sandbox.define_chat(
        bot.id, {"id": group, "type": "group", "title": "Team", "migrated_to": supergroup}
    )

    first = await sent(stack, tenant, conversation_id=conversation_id, text="after the upgrade")
    assert first["status"] == "sent", first
    assert first["provider_message_id"].startswith(f"{supergroup}:")
    assert [m["message"]["text"] for m in outgoing(stack, bot, supergroup)] == ["after the upgrade"]
    calls = stack.calls(bot.id, "sendMessage")
    assert [(c["params"]["chat_id"], c["ok"]) for c in calls] == [
        (str(group), False),
        (str(supergroup), True),
    ]
    conversation = await stack.api.client.get(
        f"/v1/conversations/{conversation_id}", headers=tenant.key_headers
    )
    assert conversation.json()["external_id"] == str(supergroup)

    second = await sent(stack, tenant, conversation_id=conversation_id, text="straight there")
    assert second["status"] == "sent"
    assert stack.calls(bot.id, "sendMessage")[-1]["params"]["chat_id"] == str(supergroup)
    assert len(stack.calls(bot.id, "sendMessage")) == 3


async def test_received_files_are_fetched_on_demand(stack: Stack) -> None:
    tenant, bot, _ = await connected(stack)
    picture = PNG * 10
    stored = stack.sandbox.upload_file(bot.id, picture, kind="photo", mime_type="image/png")
    big = stack.sandbox.upload_file(bot.id, None, size=200_000, kind="document", file_name="big.bin")
    huge = stack.sandbox.upload_file(
        bot.id, None, size=25 * 1024 * 1024, kind="document", file_name="huge.bin"
    )

    def with_file(field: str, stored_file: Any) -> dict[str, Any]:
        update = text_update(USER, "")
        message = update["message"]
        del message["text"]
        described = {"file_id": stored_file.file_id, "file_unique_id": stored_file.file_unique_id}
        if field == "photo":
            message["photo"] = [{**described, "width": 1, "height": 1}]
        else:
            message["document"] = {**described, "file_name": stored_file.file_name}
        return update

    photo = await inbound(stack, tenant, bot, with_file("photo", stored))
    (attachment,) = photo["data"]["attachments"]
    assert attachment["kind"] == "image"
    fetched = await stack.api.client.get(attachment["url"], headers=tenant.key_headers)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == picture
    assert stack.calls(bot.id, "getFile")[-1]["params"] == {"file_id": stored.file_id}

    # Over CHATGATE_MEDIA_FETCH_MAX_BYTES (100 000 bytes here): 413, before any download.
    too_big = await inbound(stack, tenant, bot, with_file("document", big))
    response = await stack.api.client.get(
        too_big["data"]["attachments"][0]["url"], headers=tenant.key_headers
    )
    assert response.status_code == 413, response.text
    assert "200000 bytes" in response.json()["detail"]
    # Over Telegram's 20 MB getFile limit: Telegram's refusal, as a 4xx.
    too_huge = await inbound(stack, tenant, bot, with_file("document", huge))
    response = await stack.api.client.get(
        too_huge["data"]["attachments"][0]["url"], headers=tenant.key_headers
    )
    assert 400 <= response.status_code < 500, response.text
    assert "too big" in response.json()["detail"]


# --- 6. rate limits ---------------------------------------------------------------------------


def busiest_second(times: list[float]) -> int:
    """The most calls in any one-second window starting at a call."""
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))


async def test_a_burst_to_one_chat_is_paced_and_a_429_pauses_only_that_chat(
    settings_factory: Callable[..., Settings],
) -> None:
    # Telegram's per-chat budget is 1 message/s with bursts of 3; a faster one (20/s, burst 2)
    # keeps this test short while exercising the same pacing.
    rate, burst = 20, 2
    policies = {"telegram_bot": {"chat": [rate, burst], "group": [rate, burst], "bot": [200, 50]}}
    async with telegram_stack(settings_factory, rate_limit_policies=policies) as stack:
        tenant, bot, integration = await connected(stack)
        started = asyncio.get_running_loop().time()
        messages = await asyncio.gather(
            *(
                send(stack, tenant, integration_id=integration["id"], to=str(USER), text=f"burst {n}")
                for n in range(100)
            )
        )
        await until(lambda: len(outgoing(stack, bot, USER)) == 100, timeout=30)
        elapsed = asyncio.get_running_loop().time() - started
        times = [c["time"] for c in stack.calls(bot.id, "sendMessage")]
        assert len(times) == 100
        assert all(c["ok"] for c in stack.calls(bot.id, "sendMessage"))
        assert busiest_second(times) <= rate + burst, busiest_second(times)
        assert elapsed >= (100 - burst) / rate - 0.5
        assert sorted(m["message"]["text"] for m in outgoing(stack, bot, USER)) == sorted(
            f"burst {n}" for n in range(100)
        )
        for message in messages[:3]:
            assert (await message_status(stack.api, tenant, message["id"]))["status"] == "sent"

        # A 429 with retry_after=3 for one chat: that chat waits 3 s, another keeps flowing.
        other = 5151
        stack.sandbox.define_chat(bot.id, {"id": other, "type": "private", "first_name": "Bob"})
        stack.sandbox.add_fault(
            kind="429", bot_id=bot.id, method="sendMessage", chat_id=str(USER), retry_after=3
        )
        before = len(stack.calls(bot.id, "sendMessage"))
        paused = [await send(stack, tenant, integration_id=integration["id"], to=str(USER), text="paused 0")]
        await until(lambda: len(stack.calls(bot.id, "sendMessage")) > before)
        paused += [
            await send(stack, tenant, integration_id=integration["id"], to=str(USER), text=f"paused {n}")
            for n in range(1, 4)
        ]
        flowing = [
            await send(stack, tenant, integration_id=integration["id"], to=str(other), text=f"flowing {n}")
            for n in range(6)
        ]
        for message in paused + flowing:
            assert (await message_status(stack.api, tenant, message["id"]))["status"] == "sent"
        calls = stack.calls(bot.id, "sendMessage")[before:]
        refused = [c for c in calls if not c["ok"]]
        assert [(c["error_code"], c["params"]["chat_id"]) for c in refused] == [(429, str(USER))]
        limited_at = refused[0]["time"]
        to_user = [c["time"] for c in calls if c["ok"] and c["params"]["chat_id"] == str(USER)]
        to_other = [c["time"] for c in calls if c["params"]["chat_id"] == str(other)]
        assert len(to_user) == 4
        assert len(to_other) == 6
        assert min(to_user) >= limited_at + 3.0 - 0.05, min(to_user) - limited_at
        assert max(to_other) < limited_at + 2.0, "the other chat was not held up by the pause"
        assert len(stack.calls(bot.id, "sendMessage")) == before + 11, "nothing sent twice"


# --- 7. channels and groups -------------------------------------------------------------------


async def test_channels_connect_with_a_rights_check_list_post_and_remove(stack: Stack) -> None:
    tenant, bot, integration = await connected(stack)
    headers = tenant.key_headers
    channel_id = -1001111
    stack.sandbox.define_chat(
        bot.id,
        {
            "id": channel_id,
            "type": "channel",
            "title": "News",
            "username": "news_channel",
            "status": "administrator",
            "rights": {"can_post_messages": True, "can_edit_messages": True},
        },
    )
    stack.sandbox.define_chat(
        bot.id, {"id": -1002222, "type": "channel", "title": "Read only", "username": "ro_channel"}
    )
    stack.sandbox.define_chat(
        bot.id,
        {
            "id": -1003333,
            "type": "channel",
            "title": "No posting",
            "username": "np_channel",
            "status": "administrator",
            "rights": {"can_post_messages": False},
        },
    )
    stack.sandbox.define_chat(
        bot.id,
        {
            "id": -1004444,
            "type": "supergroup",
            "title": "Muted",
            "status": "restricted",
            "rights": {"can_send_messages": False},
        },
    )

    async def connect(chat: str) -> Any:
        return await stack.api.client.post(
            "/v1/channels", json={"integration_id": integration["id"], "chat": chat}, headers=headers
        )

    for chat, right in (
        ("@ro_channel", "can_post_messages"),
        ("@np_channel", "can_post_messages"),
        ("-1004444", "can_send_messages"),
    ):
        refused = await connect(chat)
        assert refused.status_code == 422, refused.text
        assert right in refused.json()["detail"], (chat, refused.json()["detail"])
    unknown = await connect("@no_such_channel")
    assert unknown.status_code == 422
    assert "does not know the chat @no_such_channel" in unknown.json()["detail"]
    assert (await stack.api.client.get("/v1/channels", headers=headers)).json()["data"] == []

    created = await connect("@news_channel")
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel["external_id"] == str(channel_id)
    assert channel["kind"] == "channel"
    assert channel["title"] == "News"
    assert channel["username"] == "news_channel"
    assert channel["member_status"] == "administrator"
    assert channel["can_post"] is True
    assert channel["rights"]["can_post_messages"] is True
    assert channel["connected"] is True
    assert (await connect("https://t.me/news_channel")).json()["id"] == channel["id"], (
        "connecting twice is one channel"
    )

    listed = (await stack.api.client.get("/v1/channels", headers=headers)).json()["data"]
    assert [c["id"] for c in listed] == [channel["id"]]
    got = await stack.api.client.get(f"/v1/channels/{channel['id']}", headers=headers)
    assert got.json() == channel | {"updated_at": got.json()["updated_at"]}

    posted = await stack.api.client.post(
        f"/v1/channels/{channel['id']}/messages",
        json={"text": "<b>news</b>", "parse_mode": "HTML"},
        headers=headers,
    )
    assert posted.status_code == 202, posted.text
    result = await message_status(stack.api, tenant, posted.json()["message"]["id"])
    assert result["status"] == "sent", result
    (post,) = outgoing(stack, bot, channel_id)
    assert post["message"]["text"] == "news"
    assert post["message"]["sender_chat"]["id"] == channel_id

    removed = await stack.api.client.delete(f"/v1/channels/{channel['id']}", headers=headers)
    assert removed.status_code == 204
    assert (await stack.api.client.get(f"/v1/channels/{channel['id']}", headers=headers)).status_code == 404


async def test_seed_channel_endpoints(stack: Stack) -> None:
    tenant, bot, integration = await connected(stack)
    headers = tenant.key_headers
    stack.sandbox.define_chat(
        bot.id,
        {
            "id": -1005555,
            "type": "channel",
            "title": "Seed channel",
            "username": "seed_channel",
            "status": "administrator",
            "rights": {"can_post_messages": True},
        },
    )
    stack.sandbox.define_chat(bot.id, {"id": -1006666, "type": "supergroup", "title": "Seed group"})
    by_id = await stack.api.client.post(
        "/api/integrations/telegram/channels",
        json={"bot_id": integration["id"], "channel_id": -1005555},
        headers=headers,
    )
    assert by_id.status_code == 201, by_id.text
    channel = by_id.json()
    assert channel["channel_id"] == -1005555
    assert channel["bot_id"] == integration["id"]
    assert channel["type"] == "channel"
    assert channel["is_active"] is True
    assert channel["can_post"] is True
    by_name = await stack.api.client.post(
        "/api/integrations/telegram/channels", json={"username": "seed_channel"}, headers=headers
    )
    assert by_name.status_code == 201, by_name.text
    assert by_name.json()["id"] == channel["id"]
    group = await stack.api.client.post(
        "/api/integrations/telegram/channels",
        json={"bot_id": integration["id"], "channel_id": "-1006666"},
        headers=headers,
    )
    assert group.status_code == 201, group.text
    assert group.json()["type"] == "group"

    listed = await stack.api.client.get("/api/integrations/telegram/channels", headers=headers)
    assert sorted(c["id"] for c in listed.json()) == sorted([channel["id"], group.json()["id"]])
    got = await stack.api.client.get(f"/api/integrations/telegram/channels/{channel['id']}", headers=headers)
    assert got.status_code == 200
    assert got.json()["title"] == "Seed channel"

    posted = await stack.api.client.post(
        f"/api/integrations/telegram/channels/{channel['id']}/send",
        json={"text": "from the seed API"},
        headers=headers,
    )
    assert posted.status_code == 202, posted.text
    assert (await message_status(stack.api, tenant, posted.json()["message"]["id"]))["status"] == "sent"
    assert [m["message"]["text"] for m in outgoing(stack, bot, -1005555)] == ["from the seed API"]

    deleted = await stack.api.client.delete(
        f"/api/integrations/telegram/channels/{channel['id']}", headers=headers
    )
    assert deleted.status_code == 204
    assert (
        await stack.api.client.get(f"/api/integrations/telegram/channels/{channel['id']}", headers=headers)
    ).status_code == 404
