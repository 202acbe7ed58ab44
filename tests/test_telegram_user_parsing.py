"""Telethon event objects → stored payloads → provider-neutral events.

The events come from the fake, which builds Telethon's own TL updates and turns them into
Telethon's own event objects with Telethon's event builders; every payload is also pushed
through JSON and parsed again, as the runtime does with stored updates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from telethon import TelegramClient, events  # type: ignore[import-untyped, unused-ignore]
from telethon.sessions import StringSession  # type: ignore[import-untyped, unused-ignore]
from telethon.tl import types  # type: ignore[import-untyped, unused-ignore]

from chatgate.domain.inbound import (
    Attachment,
    ChatRef,
    DeletedMessages,
    EditedMessage,
    Ignored,
    Party,
    ProviderEvent,
    ReceivedMessage,
    StatusUpdate,
)
from chatgate.domain.messages import ConversationKind, MessageStatus
from chatgate.providers.telegram_user.client import RawAccountUpdate
from chatgate.providers.telegram_user.fake import (
    FakeAccountClient,
    FakeTelegram,
    FakeUser,
    contact_media,
    dice_media,
    document_media,
    geo_media,
    photo_media,
)
from chatgate.providers.telegram_user.parsing import (
    account_update,
    jsonable,
    parse_payload,
    raw_update,
    unplaced_deleted_ids,
)

ADA = "+14155550100"
BOB = "+14155550111"


class Inbox:
    """The update handler: what the account's client received, re-parsed from stored JSON."""

    def __init__(self) -> None:
        self.updates: list[tuple[RawAccountUpdate, list[ProviderEvent]]] = []

    async def __call__(self, raw: RawAccountUpdate, parsed: list[ProviderEvent]) -> None:
        stored = json.loads(json.dumps(raw.payload))  # what a database gives back
        assert parse_payload(stored) == parsed
        self.updates.append((raw, parsed))

    def only(self) -> tuple[RawAccountUpdate, ProviderEvent]:
        assert len(self.updates) == 1, self.updates
        raw, parsed = self.updates.pop()
        assert len(parsed) == 1, parsed
        return raw, parsed[0]


@pytest.fixture
def fake() -> FakeTelegram:
    telegram = FakeTelegram()
    telegram.add_account(ADA, "Ada", "Lovelace", username="ada_l")
    telegram.add_user("Bob", "Builder", username="bob_builder", phone=BOB)
    return telegram


@pytest.fixture
def bob(fake: FakeTelegram) -> FakeUser:
    user = fake.user_by_phone(BOB)
    assert user is not None
    return user


@pytest.fixture
def ada(fake: FakeTelegram) -> FakeUser:
    user = fake.user_by_phone(ADA)
    assert user is not None
    return user


@pytest.fixture
async def account(fake: FakeTelegram) -> AsyncIterator[FakeAccountClient]:
    client = FakeAccountClient(fake)
    await client.connect()
    sent = await client.send_code(ADA)
    await client.sign_in_code(ADA, fake.last_code(ADA), sent.phone_code_hash)
    yield client
    await client.disconnect()


@pytest.fixture
def inbox(account: FakeAccountClient) -> Inbox:
    handler = Inbox()
    account.on_event(handler)
    return handler


# --- messages ----------------------------------------------------------------------------------


async def test_private_message(fake: FakeTelegram, bob: FakeUser, inbox: Inbox) -> None:
    delivered = await fake.deliver_message(ADA, bob, "hello Ada")

    raw, event = inbox.only()

    assert raw.key == f"msg:{bob.id}:{delivered.message_id}"
    assert isinstance(event, ReceivedMessage)
    assert event.provider_message_id == f"{bob.id}:{delivered.message_id}"
    assert event.chat == ChatRef(str(bob.id), ConversationKind.PRIVATE, "Bob Builder")
    assert event.sender == Party(str(bob.id), "Bob Builder", "bob_builder", None)
    assert event.text == "hello Ada"
    assert event.attachments == ()
    assert event.sent_at is not None
    assert abs(event.sent_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert raw.payload["tl"]["_"] == "UpdateNewMessage"  # Telethon's own dict of the update
    assert raw.payload["tl"]["message"]["message"] == "hello Ada"


async def test_a_contact_sender_comes_with_the_phone(
    fake: FakeTelegram, bob: FakeUser, account: FakeAccountClient, inbox: Inbox
) -> None:
    await account.resolve(BOB)  # imports Bob as a contact: Telegram then shows his phone

    await fake.deliver_message(ADA, bob, "now we are contacts")

    _, event = inbox.only()
    assert isinstance(event, ReceivedMessage)
    assert event.sender.phone == BOB


async def test_replies_and_forwards(fake: FakeTelegram, bob: FakeUser, ada: FakeUser, inbox: Inbox) -> None:
    first = await fake.deliver_message(ADA, bob, "question")
    inbox.updates.clear()

    await fake.deliver_message(ADA, bob, "see above", reply_to=first.message_id, forward_from=ada)

    _, event = inbox.only()

    assert isinstance(event, ReceivedMessage)
    assert event.reply_to_provider_id == f"{bob.id}:{first.message_id}"
    assert event.extra["forward_origin"]["from_id"] == ada.id
    assert "date" in event.extra["forward_origin"]


async def test_basic_group_message(fake: FakeTelegram, bob: FakeUser, inbox: Inbox) -> None:
    team = fake.add_chat("group", "Team")

    delivered = await fake.deliver_message(ADA, bob, "morning all", chat=team)

    raw, event = inbox.only()
    assert delivered.chat_id == -team.id
    assert raw.key == f"msg:{-team.id}:{delivered.message_id}"
    assert isinstance(event, ReceivedMessage)
    assert event.chat == ChatRef(str(-team.id), ConversationKind.GROUP, "Team")
    assert event.sender.address == str(bob.id)
    assert event.sender.display_name == "Bob Builder"


async def test_supergroup_message(fake: FakeTelegram, bob: FakeUser, inbox: Inbox) -> None:
    delivered = await fake.deliver_message(ADA, bob, "in the big group", chat_kind="supergroup")

    raw, event = inbox.only()

    assert str(delivered.chat_id).startswith("-100")
    assert isinstance(event, ReceivedMessage)
    assert event.chat.kind == ConversationKind.GROUP
    assert event.chat.external_id == str(delivered.chat_id)
    assert event.provider_message_id == f"{delivered.chat_id}:1"  # supergroups number their own
    assert raw.payload["tl"]["_"] == "UpdateNewChannelMessage"
    assert event.sender.address == str(bob.id)


async def test_channel_post_is_sent_by_the_channel(fake: FakeTelegram, inbox: Inbox) -> None:
    news = fake.add_chat("channel", "News", username="newsroom")

    delivered = await fake.deliver_message(ADA, None, "breaking", chat=news)

    _, event = inbox.only()
    assert isinstance(event, ReceivedMessage)
    assert event.chat == ChatRef(str(news.marked_id), ConversationKind.CHANNEL, "News")
    assert event.sender == Party(str(news.marked_id), "News", "newsroom", None)
    assert event.provider_message_id == f"{news.marked_id}:{delivered.message_id}"


async def test_the_accounts_own_messages_are_ignored(
    bob: FakeUser, account: FakeAccountClient, inbox: Inbox
) -> None:
    sent = await account.send_message("@bob_builder", "from chatgate")

    raw, event = inbox.only()

    assert raw.key == f"msg:{bob.id}:{sent.message_id}"
    assert raw.payload["message"]["out"] is True
    assert isinstance(event, Ignored)
    assert "the account's own" in event.reason


async def test_a_message_with_nothing_we_understand_is_ignored(
    fake: FakeTelegram, bob: FakeUser, inbox: Inbox
) -> None:
    await fake.deliver_message(ADA, bob, "")

    _, event = inbox.only()

    assert isinstance(event, Ignored)
    assert "no text or media we understand" in event.reason


# --- media -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        (
            photo_media(size=54_321, width=1280, height=960),
            Attachment("image", "image/jpeg", 54_321, None, "{ref}", extra={"width": 1280, "height": 960}),
        ),
        (
            document_media("report.pdf", "application/pdf", 2048),
            Attachment("document", "application/pdf", 2048, "report.pdf", "{ref}"),
        ),
        (
            document_media(None, "audio/ogg", 999, voice=True, duration=4),
            Attachment("voice", "audio/ogg", 999, None, "{ref}", extra={"duration": 4}),
        ),
        (
            document_media("song.mp3", "audio/mpeg", 4000, audio=True, duration=200),
            Attachment("audio", "audio/mpeg", 4000, "song.mp3", "{ref}", extra={"duration": 200}),
        ),
        (
            document_media("clip.mp4", "video/mp4", 8000, video=True, duration=7),
            Attachment(
                "video",
                "video/mp4",
                8000,
                "clip.mp4",
                "{ref}",
                extra={"duration": 7, "width": 640, "height": 640},
            ),
        ),
        (
            document_media(None, "video/mp4", 600, round_video=True, duration=2),
            Attachment(
                "video",
                "video/mp4",
                600,
                None,
                "{ref}",
                extra={"duration": 2, "width": 640, "height": 640, "video_note": True},
            ),
        ),
        (
            document_media("sticker.webp", "image/webp", 300, sticker="🙂"),
            Attachment("sticker", "image/webp", 300, "sticker.webp", "{ref}", extra={"emoji": "🙂"}),
        ),
        (geo_media(52.52, 13.405), Attachment("location", extra={"latitude": 52.52, "longitude": 13.405})),
        (
            contact_media("+15550001", "Carol", "C", user_id=77),
            Attachment(
                "contact",
                extra={"phone_number": "+15550001", "first_name": "Carol", "last_name": "C", "user_id": 77},
            ),
        ),
        (dice_media(5, "🎯"), Attachment("other", extra={"type": "dice", "emoji": "🎯", "value": 5})),
    ],
    ids=["photo", "document", "voice", "audio", "video", "round", "sticker", "geo", "contact", "dice"],
)
async def test_media(
    fake: FakeTelegram, bob: FakeUser, inbox: Inbox, media: Any, expected: Attachment
) -> None:
    delivered = await fake.deliver_message(ADA, bob, "", media=media)

    raw, event = inbox.only()

    ref = f"{bob.id}:{delivered.message_id}"
    if expected.provider_file_id == "{ref}":
        expected = Attachment(
            expected.kind, expected.mime_type, expected.size, expected.file_name, ref, extra=expected.extra
        )
    assert isinstance(event, ReceivedMessage)
    assert event.text is None
    assert event.attachments == (expected,)
    assert json.loads(json.dumps(raw.payload))["message"]["media"]["kind"] == expected.kind


async def test_a_caption_is_the_text(fake: FakeTelegram, bob: FakeUser, inbox: Inbox) -> None:
    await fake.deliver_message(ADA, bob, "our logo", media=photo_media())

    _, event = inbox.only()

    assert isinstance(event, ReceivedMessage)
    assert event.text == "our logo"
    assert [a.kind for a in event.attachments] == ["image"]


# --- edits, deletions, read receipts -------------------------------------------------------------


async def test_edits(fake: FakeTelegram, bob: FakeUser, inbox: Inbox) -> None:
    delivered = await fake.deliver_message(ADA, bob, "helo")
    inbox.updates.clear()

    await fake.edit(ADA, delivered.chat_id, delivered.message_id, "hello")

    raw, event = inbox.only()
    assert isinstance(event, EditedMessage)
    assert event.provider_message_id == f"{bob.id}:{delivered.message_id}"
    assert event.text == "hello"
    assert event.sender is not None
    assert event.sender.address == str(bob.id)
    assert event.edited_at is not None
    assert raw.key == f"edit:{bob.id}:{delivered.message_id}:{int(event.edited_at.timestamp())}"

    await fake.edit(ADA, delivered.chat_id, delivered.message_id, None)  # e.g. a reaction
    again, _ = inbox.updates.pop()
    assert again.key == raw.key  # the same edit as far as the dedupe key goes


async def test_a_change_that_is_no_edit_is_ignored(fake: FakeTelegram, bob: FakeUser, inbox: Inbox) -> None:
    delivered = await fake.deliver_message(ADA, bob, "react to me")
    inbox.updates.clear()

    await fake.edit(ADA, delivered.chat_id, delivered.message_id, None)

    raw, event = inbox.only()
    assert raw.key == f"edit:{bob.id}:{delivered.message_id}:0"
    assert isinstance(event, Ignored)
    assert "changed without an edit" in event.reason


async def test_channel_edit(fake: FakeTelegram, inbox: Inbox) -> None:
    news = fake.add_chat("channel", "News")
    delivered = await fake.deliver_message(ADA, None, "v1", chat=news)
    inbox.updates.clear()

    await fake.edit(ADA, news.marked_id, delivered.message_id, "v2")

    raw, event = inbox.only()
    assert raw.payload["tl"]["_"] == "UpdateEditChannelMessage"
    assert isinstance(event, EditedMessage)
    assert (event.chat.kind, event.text) == (ConversationKind.CHANNEL, "v2")


async def test_private_deletions_need_the_runtime_to_place_them(
    fake: FakeTelegram, bob: FakeUser, inbox: Inbox
) -> None:
    first = await fake.deliver_message(ADA, bob, "one")
    second = await fake.deliver_message(ADA, bob, "two")
    inbox.updates.clear()

    await fake.delete(ADA, bob.id, [first.message_id, second.message_id])

    raw, event = inbox.only()
    assert raw.key == f"del::{first.message_id},{second.message_id}"
    assert raw.payload["chat"] is None
    assert isinstance(event, Ignored)
    assert "does not say in which private chat" in event.reason
    assert unplaced_deleted_ids(raw.payload) == [first.message_id, second.message_id]
    chat = ChatRef(str(bob.id), ConversationKind.PRIVATE, "Bob Builder")
    placed = parse_payload(raw.payload, chats={first.message_id: chat})
    assert placed[0] == DeletedMessages(chat, (f"{bob.id}:{first.message_id}",))
    assert isinstance(placed[1], Ignored)
    assert str(second.message_id) in placed[1].reason


async def test_channel_deletions_name_the_channel(fake: FakeTelegram, bob: FakeUser, inbox: Inbox) -> None:
    delivered = await fake.deliver_message(ADA, bob, "oops", chat_kind="supergroup")
    inbox.updates.clear()

    await fake.delete(ADA, delivered.chat_id, [delivered.message_id])

    raw, event = inbox.only()
    assert raw.key == f"del:{delivered.chat_id}:{delivered.message_id}"
    assert isinstance(event, DeletedMessages)
    assert event.chat.external_id == str(delivered.chat_id)
    assert event.provider_message_ids == (f"{delivered.chat_id}:{delivered.message_id}",)
    assert unplaced_deleted_ids(raw.payload) == []


async def test_read_receipts_for_our_messages(
    fake: FakeTelegram, bob: FakeUser, account: FakeAccountClient, inbox: Inbox
) -> None:
    await account.send_message("@bob_builder", "one")
    sent = await account.send_message("@bob_builder", "two")
    inbox.updates.clear()

    await fake.read_outbox(ADA, bob.id, sent.message_id)

    raw, event = inbox.only()
    assert raw.key == f"read:{bob.id}:{sent.message_id}"
    assert event == StatusUpdate(f"{bob.id}:{sent.message_id}", MessageStatus.READ)


@pytest.mark.parametrize("kind", ["group", "supergroup"])
async def test_read_receipts_in_groups(
    fake: FakeTelegram, ada: FakeUser, account: FakeAccountClient, inbox: Inbox, kind: Any
) -> None:
    chat = fake.add_chat(kind, "Team", members=[ada])
    sent = await account.send_message(chat.marked_id, "minutes attached")
    inbox.updates.clear()

    await fake.read_outbox(ADA, chat.marked_id, sent.message_id)

    raw, event = inbox.only()
    expected_update = "UpdateReadChannelOutbox" if kind == "supergroup" else "UpdateReadHistoryOutbox"
    assert raw.payload["tl"]["_"] == expected_update
    assert event == StatusUpdate(f"{chat.marked_id}:{sent.message_id}", MessageStatus.READ)


# --- Telethon objects built directly ---------------------------------------------------------


def _event(builder: Any, update: Any, entities: list[Any]) -> Any:
    """What TelegramClient._dispatch_update does with an update, on a never-connected client."""
    client = TelegramClient(StringSession(), 1, "x", receive_updates=False)
    client._mb_entity_cache.set_self_user(1, False, 1)
    update._entities = {e.id: e for e in entities}
    event = builder.build(update, None, 1)
    event.original_update = update
    event._entities = update._entities
    event._set_client(client)
    return event


def _message(**fields: Any) -> Any:
    values = {
        "id": 9,
        "peer_id": types.PeerUser(42),
        "date": datetime(2025, 5, 1, tzinfo=UTC),
        "message": "hi",
    }
    values.update(fields)
    return types.Message(**values)


def test_forum_topics_and_entities() -> None:
    eve = types.User(id=42, first_name="Eve", access_hash=5)
    in_topic = _message(reply_to=types.MessageReplyHeader(forum_topic=True, reply_to_msg_id=3))
    reply_in_topic = _message(
        id=10,
        reply_to=types.MessageReplyHeader(forum_topic=True, reply_to_msg_id=8, reply_to_top_id=3),
        entities=[
            types.MessageEntityBold(offset=0, length=2),
            types.MessageEntityTextUrl(offset=0, length=2, url="https://example.com"),
        ],
    )

    topic = account_update(_event(events.NewMessage, types.UpdateNewMessage(in_topic, 1, 1), [eve]))
    reply = account_update(_event(events.NewMessage, types.UpdateNewMessage(reply_in_topic, 2, 1), [eve]))

    assert topic is not None
    assert reply is not None
    first, second = topic[1][0], reply[1][0]
    assert isinstance(first, ReceivedMessage)
    assert isinstance(second, ReceivedMessage)
    assert (first.reply_to_provider_id, first.extra["message_thread_id"]) == (None, 3)
    assert (second.reply_to_provider_id, second.extra["message_thread_id"]) == ("42:8", 3)
    assert second.extra["entities"] == [
        {"type": "bold", "offset": 0, "length": 2},
        {"type": "text_url", "offset": 0, "length": 2, "url": "https://example.com"},
    ]


def test_inbox_reads_and_foreign_events_are_not_receipts() -> None:
    inbox_read = _event(
        events.MessageRead,
        types.UpdateReadHistoryInbox(
            peer=types.PeerUser(42), max_id=5, still_unread_count=0, pts=1, pts_count=1
        ),
        [],
    )

    raw = raw_update(inbox_read)

    assert raw is not None
    assert raw.key == "read-in:42:5"
    assert parse_payload(raw.payload) == [
        Ignored("the account read incoming messages (in another of its apps)")
    ]
    assert raw_update(object()) is None
    assert account_update("not an event") is None


def test_a_supergroup_entity_missing_from_the_update() -> None:
    post = _message(peer_id=types.PeerChannel(777), post=True, message="a post")
    chat_message = _message(peer_id=types.PeerChannel(777), from_id=types.PeerUser(42), message="a chat")

    broadcast = account_update(_event(events.NewMessage, types.UpdateNewChannelMessage(post, 1, 1), []))
    group = account_update(_event(events.NewMessage, types.UpdateNewChannelMessage(chat_message, 2, 1), []))

    assert broadcast is not None
    assert group is not None
    assert broadcast[1][0].chat.kind == ConversationKind.CHANNEL  # type: ignore[union-attr]
    assert group[1][0].chat.kind == ConversationKind.GROUP  # type: ignore[union-attr]
    assert group[1][0].sender == Party("42")  # type: ignore[union-attr]


def test_an_event_we_cannot_read_is_still_stored() -> None:
    event = _event(events.NewMessage, types.UpdateNewMessage(_message(), 1, 1), [])
    event.message.peer_id = None  # a shape this parser does not know

    raw = raw_update(event)

    assert raw is not None
    assert raw.key.startswith("unparsed:")
    assert raw.payload["tl"]["_"] == "UpdateNewMessage"
    assert raw_update(event) == raw  # the same update gives the same dedupe key
    (ignored,) = parse_payload(json.loads(json.dumps(raw.payload)))
    assert isinstance(ignored, Ignored)
    assert ignored.reason.startswith("a Telegram NewMessage.Event could not be read: ")


# --- stored payloads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"v": 1, "type": "poll_vote"}, "'poll_vote' account updates are not handled"),
        (
            {"v": 1, "type": "message", "chat": None, "message": {"id": 1}},
            "malformed: 'chat' must be an object",
        ),
        ({"v": 1, "type": "message", "chat": {"id": 5, "kind": "private"}, "message": {}}, "'message.id'"),
        ({"v": 1, "type": "delete", "chat": None, "ids": "1,2"}, "'ids' must be a list of integers"),
        ({"v": 1, "type": "delete", "chat": None, "ids": []}, "lists no message ids"),
        ({"v": 1, "type": "read", "chat": {"id": 5}, "outbox": True}, "'max_id' must be an integer"),
        ({"v": 1, "type": "read", "chat": None, "max_id": 3, "outbox": True}, "without a chat"),
    ],
)
def test_payloads_we_cannot_use_become_ignored(payload: dict[str, Any], reason: str) -> None:
    events_ = parse_payload(payload)

    assert len(events_) == 1
    assert isinstance(events_[0], Ignored)
    assert reason in events_[0].reason


def test_an_unknown_chat_kind_falls_back_on_the_id() -> None:
    payload = {
        "v": 1,
        "type": "message",
        "chat": {"id": -55, "kind": "forum-of-the-future"},
        "message": {"id": 2, "date": 1_700_000_000, "text": "hi", "out": False},
    }

    (event,) = parse_payload(payload)

    assert isinstance(event, ReceivedMessage)
    assert event.chat == ChatRef("-55", ConversationKind.GROUP)
    assert event.sender == Party("-55")
    assert event.sent_at == datetime.fromtimestamp(1_700_000_000, UTC)


def test_jsonable_makes_telethon_dicts_safe() -> None:
    value = jsonable({"b": b"\x00\x01", "d": datetime(2025, 1, 1, tzinfo=UTC), "l": (1, None), "o": object})

    assert value["b"] == {"_bytes": "AAE="}
    assert value["d"] == "2025-01-01T00:00:00+00:00"
    assert value["l"] == [1, None]
    assert isinstance(value["o"], str)
    json.dumps(value)
