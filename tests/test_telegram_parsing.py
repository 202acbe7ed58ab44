"""Telegram `Update` webhook bodies → provider-neutral events.

Every vendored sample update (tests/contracts/telegram-updates/updates/*.json, globbed so new
samples are covered) must parse without raising; the specific tests read their expected values
from the sample JSON itself, sometimes after changing a copy of it (a promotion, a channel post
without `from`) where the samples do not cover a case.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chatgate.domain.errors import InvalidInput
from chatgate.domain.inbound import (
    Attachment,
    ButtonPressed,
    ChatMembership,
    DeletedMessages,
    EditedMessage,
    Ignored,
    Party,
    Reaction,
    ReceivedMessage,
)
from chatgate.domain.messages import ConversationKind
from chatgate.providers.telegram.parsing import parse_update, update_id

UPDATES = Path(__file__).parent / "contracts" / "telegram-updates" / "updates"
ALL_UPDATES = sorted(UPDATES.glob("*.json"))
EVENT_TYPES = (
    ReceivedMessage,
    EditedMessage,
    DeletedMessages,
    ButtonPressed,
    Reaction,
    ChatMembership,
    Ignored,
)
MESSAGE_KINDS = ("message", "channel_post", "business_message")
# What makes a Message a message a person wrote rather than a service message.
CONTENT_FIELDS = {
    "text", "caption", "photo", "document", "audio", "voice", "video", "video_note", "animation",
    "sticker", "location", "venue", "contact", "dice", "poll", "game", "checklist", "story",
    "invoice", "rich_message", "paid_media",
}  # fmt: skip

E = TypeVar("E")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((UPDATES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def parse(update: dict[str, Any]) -> list[Any]:
    return list(parse_update(json.dumps(update).encode()))


def only(update: dict[str, Any], kind: type[E]) -> E:
    events = parse(update)
    assert len(events) == 1, events
    assert isinstance(events[0], kind), events[0]
    return events[0]


def payload_kind(update: dict[str, Any]) -> str:
    (kind,) = [k for k, v in update.items() if k != "update_id" and v is not None]
    return kind


def full_name(raw: dict[str, Any]) -> str:
    return " ".join(n for n in (raw.get("first_name"), raw.get("last_name")) if n)


def at(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def assert_party(party: Party | None, raw: dict[str, Any]) -> None:
    assert party is not None
    assert party.address == str(raw["id"])
    assert party.display_name == (raw.get("title") or full_name(raw))
    assert party.username == raw.get("username")


# --- every sample --------------------------------------------------------------------------------


def test_the_sample_directory_is_there() -> None:
    assert len(ALL_UPDATES) >= 100


@pytest.mark.parametrize("path", ALL_UPDATES, ids=lambda p: p.stem)
def test_every_sample_update_parses_into_events(path: Path) -> None:
    body = path.read_bytes()
    update = json.loads(body)
    events = parse_update(body)
    assert events
    assert all(isinstance(event, EVENT_TYPES) for event in events)
    assert update_id(body) == str(update["update_id"])
    kind = payload_kind(update)
    for event in events:
        if isinstance(event, Ignored):
            assert kind in event.reason  # the reason names what was ignored
    if kind in MESSAGE_KINDS:
        message = update[kind]
        (event,) = events
        if CONTENT_FIELDS & message.keys():
            assert isinstance(event, ReceivedMessage)
            assert event.provider_message_id == f"{message['chat']['id']}:{message['message_id']}"
            assert event.chat.external_id == str(message["chat"]["id"])
            assert event.sent_at == at(message["date"])
            assert event.text == (message.get("text") or message.get("caption"))
            assert event.text is not None or event.attachments
        else:
            assert isinstance(event, Ignored)
            assert "service message" in event.reason
            assert any(field in event.reason for field in message if field not in ("chat", "from"))


# --- the body itself -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b'"update"',
        b"{}",
        b'{"message": {"message_id": 1}}',
        b'{"update_id": "12"}',
        b'{"update_id": true}',
        b'{"update_id": 1.5}',
        b'{"update_id": null}',
    ],
)
def test_a_body_that_is_not_an_update_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput, match="Telegram update"):
        update_id(body)
    with pytest.raises(InvalidInput, match="Telegram update"):
        parse_update(body)


def test_update_id_is_the_update_id_as_text() -> None:
    update = load("message")
    assert update_id(json.dumps(update).encode()) == str(update["update_id"])
    assert update_id(b'{"update_id": 0, "future_kind": {}}') == "0"


def test_an_update_with_only_its_id_is_ignored() -> None:
    assert "nothing" in only({"update_id": 7}, Ignored).reason


def test_an_update_kind_from_a_future_api_version_is_ignored() -> None:
    event = only({"update_id": 7, "teleportation": {"id": 1}}, Ignored)
    assert event.reason == "teleportation updates are not handled"


def test_a_malformed_message_is_ignored_not_raised() -> None:
    update = load("message")
    del update["message"]["chat"]
    assert "message.chat" in only(update, Ignored).reason
    update = load("callback_query")
    del update["callback_query"]["from"]
    assert "callback_query.from" in only(update, Ignored).reason


# --- messages ------------------------------------------------------------------------------------


def test_text_with_entities() -> None:
    update = load("entities")
    message = update["message"]
    event = only(update, ReceivedMessage)
    assert event.text == message["text"]
    assert event.extra["entities"] == message["entities"]
    assert event.chat.kind == ConversationKind.PRIVATE
    assert event.chat.title == full_name(message["chat"])
    assert_party(event.sender, message["from"])
    assert event.sent_at == at(message["date"])
    assert event.sent_at.tzinfo is not None
    assert event.attachments == ()
    assert event.reply_to_provider_id is None


def test_caption_entities_are_kept_like_entities() -> None:
    update = load("photo")
    entities = [{"offset": 0, "length": 3, "type": "bold"}]
    update["message"]["caption_entities"] = entities
    assert only(update, ReceivedMessage).extra["entities"] == entities


def test_a_photo_is_its_largest_size_and_the_caption_is_the_text() -> None:
    update = load("photo")
    message = update["message"]
    largest = max(message["photo"], key=lambda s: s["width"] * s["height"])
    assert largest is not message["photo"][-1]  # the sample does not list sizes in order
    event = only(update, ReceivedMessage)
    assert event.text == message["caption"]
    (image,) = event.attachments
    assert (image.kind, image.mime_type) == ("image", "image/jpeg")
    assert image.provider_file_id == largest["file_id"]
    assert image.size == largest["file_size"]
    message["photo"].reverse()
    assert only(update, ReceivedMessage).attachments[0].provider_file_id == largest["file_id"]


@pytest.mark.parametrize(
    ("name", "field", "kind"),
    [
        ("document", "document", "document"),
        ("audio", "audio", "audio"),
        ("voice", "voice", "voice"),
        ("video", "video", "video"),
        ("video_note", "video_note", "video"),
        ("animation", "animation", "video"),
        ("sticker", "sticker", "sticker"),
    ],
)
def test_file_attachments(name: str, field: str, kind: str) -> None:
    update = load(name)
    raw = update["message"][field]
    event = only(update, ReceivedMessage)
    (attachment,) = event.attachments  # an animation's repeated `document` is not a second file
    assert attachment.kind == kind
    assert attachment.provider_file_id == raw["file_id"]
    assert attachment.size == raw["file_size"]
    assert attachment.file_name == raw.get("file_name")
    if "mime_type" in raw:
        assert attachment.mime_type == raw["mime_type"]
    assert event.text is None


def test_kind_specific_attachment_details() -> None:
    assert only(load("animation"), ReceivedMessage).attachments[0].extra["animation"] is True
    note = only(load("video_note"), ReceivedMessage).attachments[0]
    assert (note.mime_type, note.extra["video_note"]) == ("video/mp4", True)
    audio_update = load("audio")
    audio = only(audio_update, ReceivedMessage).attachments[0]
    assert audio.extra["title"] == audio_update["message"]["audio"]["title"]
    assert audio.extra["performer"] == audio_update["message"]["audio"]["performer"]


@pytest.mark.parametrize(
    ("is_animated", "is_video", "mime"),
    [
        (False, False, "image/webp"),
        (True, False, "application/x-tgsticker"),
        (False, True, "video/webm"),
    ],
)
def test_sticker_mime_type_follows_its_format(is_animated: bool, is_video: bool, mime: str) -> None:
    update = load("sticker")
    sticker = update["message"]["sticker"]
    sticker.update(is_animated=is_animated, is_video=is_video)
    attachment = only(update, ReceivedMessage).attachments[0]
    assert attachment.mime_type == mime
    assert attachment.extra["emoji"] == sticker["emoji"]


def test_location() -> None:
    update = load("location")
    location = update["message"]["location"]
    (attachment,) = only(update, ReceivedMessage).attachments
    assert attachment == Attachment(kind="location", extra=location)


def test_a_venue_is_one_location_with_title_and_address() -> None:
    update = load("venue")
    venue = update["message"]["venue"]
    (attachment,) = only(update, ReceivedMessage).attachments
    assert attachment.kind == "location"
    assert attachment.provider_file_id is None
    assert attachment.extra["latitude"] == venue["location"]["latitude"]
    assert attachment.extra["longitude"] == venue["location"]["longitude"]
    assert attachment.extra["title"] == venue["title"]
    assert attachment.extra["address"] == venue["address"]


def test_contact() -> None:
    update = load("contact")
    contact = update["message"]["contact"]
    contact.update(last_name="Rossi", user_id=4242)
    (attachment,) = only(update, ReceivedMessage).attachments
    assert attachment.kind == "contact"
    assert attachment.extra == {**contact, "user_id": str(contact["user_id"])}


@pytest.mark.parametrize(
    ("name", "field", "detail"),
    [("dice", "dice", "value"), ("message_poll", "poll", "question"), ("game", "game", "title")],
)
def test_dice_polls_and_games_are_textless_messages_with_an_other_attachment(
    name: str, field: str, detail: str
) -> None:
    update = load(name)
    event = only(update, ReceivedMessage)
    assert event.text is None
    (attachment,) = event.attachments
    assert attachment.kind == "other"
    assert attachment.extra["type"] == field
    assert attachment.extra[detail] == update["message"][field][detail]


def test_via_bot_and_forward_origin_are_summarised_in_extra() -> None:
    game = load("game")
    assert only(game, ReceivedMessage).extra["via_bot"] == {
        "id": str(game["message"]["via_bot"]["id"]),
        "username": game["message"]["via_bot"]["username"],
    }
    forwarded = load("message_forward_origin")
    origin = forwarded["message"]["forward_origin"]
    summary = only(forwarded, ReceivedMessage).extra["forward_origin"]
    assert summary["type"] == origin["type"]
    assert summary["id"] == str(origin["sender_user"]["id"])
    assert summary["username"] == origin["sender_user"]["username"]
    assert summary["date"] == at(origin["date"]).isoformat()


def test_a_reply_points_at_the_replied_message_in_the_same_chat() -> None:
    for name in ("message_different_topic_reply", "message_general_topic_reply"):
        update = load(name)
        message = update["message"]
        event = only(update, ReceivedMessage)
        assert event.reply_to_provider_id == (
            f"{message['chat']['id']}:{message['reply_to_message']['message_id']}"
        )
        assert event.extra["message_thread_id"] == message["message_thread_id"]


def test_the_implicit_reply_to_a_forum_topic_is_not_a_reply() -> None:
    for name in ("message_topic", "message_different_topic"):
        update = load(name)
        message = update["message"]
        assert message["reply_to_message"]["message_id"] == message["message_thread_id"]
        event = only(update, ReceivedMessage)
        assert event.reply_to_provider_id is None
        assert event.extra["message_thread_id"] == message["message_thread_id"]
        assert event.chat.kind == ConversationKind.GROUP  # a supergroup
        assert event.chat.title == message["chat"]["title"]


def test_a_channel_post() -> None:
    update = load("channel_post")
    post = update["channel_post"]
    event = only(update, ReceivedMessage)
    assert event.chat.kind == ConversationKind.CHANNEL
    assert event.provider_message_id == f"{post['chat']['id']}:{post['message_id']}"
    assert_party(event.sender, post["from"])


def test_a_channel_post_without_from_is_sent_by_the_channel() -> None:
    update = load("channel_post")
    post = update["channel_post"]
    del post["from"]
    post["chat"].update(title="Mario News", type="channel")
    assert_party(only(update, ReceivedMessage).sender, post["chat"])
    post["sender_chat"] = copy.deepcopy(post["chat"])
    assert_party(only(update, ReceivedMessage).sender, post["sender_chat"])


def test_a_message_on_behalf_of_a_chat_is_sent_by_that_chat() -> None:
    update = load("message_general_topic")
    message = update["message"]
    message["sender_chat"] = {"id": -1009876543210, "title": "Mario Channel", "type": "channel"}
    assert_party(only(update, ReceivedMessage).sender, message["sender_chat"])


def test_a_message_with_content_from_an_unknown_future_field_is_ignored() -> None:
    update = load("message")
    del update["message"]["text"]
    update["message"]["hologram"] = {"id": 1}
    assert "hologram" in only(update, Ignored).reason


# --- edits, business messages, deletions ---------------------------------------------------------


def test_an_edited_message() -> None:
    update = load("edited_message")
    message = update["edited_message"]
    event = only(update, EditedMessage)
    assert event.provider_message_id == f"{message['chat']['id']}:{message['message_id']}"
    assert event.text == message["text"]
    assert event.edited_at == at(message["edit_date"])
    assert_party(event.sender, message["from"])


@pytest.mark.parametrize("name", ["edited_channel_post", "edited_business_message"])
def test_other_edits(name: str) -> None:
    update = load(name)
    message = update[name]
    event = only(update, EditedMessage)
    assert event.provider_message_id == f"{message['chat']['id']}:{message['message_id']}"
    assert event.text == message["text"]
    assert event.edited_at is None  # the samples carry no edit_date: `date` is the original send
    message["edit_date"] = message["date"] + 60
    assert only(update, EditedMessage).edited_at == at(message["edit_date"])


def test_a_business_message_keeps_its_connection() -> None:
    update = load("business_message")
    message = update["business_message"]
    event = only(update, ReceivedMessage)
    assert event.provider_message_id == f"{message['chat']['id']}:{message['message_id']}"
    assert event.text == message["text"]
    assert_party(event.sender, message["from"])
    message["business_connection_id"] = "conn-1"
    assert only(update, ReceivedMessage).extra["business_connection_id"] == "conn-1"


def test_deleted_business_messages() -> None:
    update = load("deleted_business_messages")
    deleted = update["deleted_business_messages"]
    event = only(update, DeletedMessages)
    assert event.chat.external_id == str(deleted["chat"]["id"])
    assert event.provider_message_ids == tuple(f"{deleted['chat']['id']}:{i}" for i in deleted["message_ids"])
    deleted["message_ids"] = []
    only(update, Ignored)


# --- buttons, reactions, membership --------------------------------------------------------------


@pytest.mark.parametrize("name", ["callback_query", "callback_query_complex"])
def test_a_button_press_on_a_message(name: str) -> None:
    update = load(name)
    query = update["callback_query"]
    event = only(update, ButtonPressed)
    assert event.callback_id == query["id"]
    assert event.data == query["data"]
    assert_party(event.sender, query["from"])
    assert event.chat is not None
    assert event.chat.external_id == str(query["message"]["chat"]["id"])
    assert event.provider_message_id == f"{query['message']['chat']['id']}:{query['message']['message_id']}"


def test_a_button_press_on_an_inaccessible_message_keeps_chat_and_id() -> None:
    update = load("callback_query_inaccessible_message")
    query = update["callback_query"]
    assert query["message"]["date"] == 0
    event = only(update, ButtonPressed)
    assert event.chat is not None
    assert event.chat.external_id == str(query["message"]["chat"]["id"])
    assert event.provider_message_id == f"{query['message']['chat']['id']}:{query['message']['message_id']}"


def test_a_button_press_without_a_message_has_no_chat() -> None:
    update = load("callback_query_without_message")
    query = update["callback_query"]
    event = only(update, ButtonPressed)
    assert (event.chat, event.provider_message_id) == (None, None)
    assert event.data == query["data"]
    assert_party(event.sender, query["from"])
    del query["message"]
    query["inline_message_id"] = "inline-1"
    assert only(update, ButtonPressed).chat is None


def test_a_reaction() -> None:
    update = load("message_reaction")
    raw = update["message_reaction"]
    first_emoji = next(r["emoji"] for r in raw["new_reaction"] if r["type"] == "emoji")
    event = only(update, Reaction)
    assert event.emoji == first_emoji
    assert event.provider_message_id == f"{raw['chat']['id']}:{raw['message_id']}"
    assert event.at == at(raw["date"])
    assert_party(event.sender, raw["user"])


def test_reaction_removed_custom_and_anonymous() -> None:
    update = load("message_reaction")
    raw = update["message_reaction"]
    custom = next(r for r in raw["new_reaction"] if r["type"] == "custom_emoji")
    raw["new_reaction"] = [custom]
    assert only(update, Reaction).emoji == f"custom:{custom['custom_emoji_id']}"
    raw["new_reaction"] = []
    assert only(update, Reaction).emoji == ""
    del raw["user"]
    raw["actor_chat"] = {"id": -100555, "title": "Anonymous admins", "type": "supergroup"}
    assert_party(only(update, Reaction).sender, raw["actor_chat"])


def test_reaction_counts_and_other_members_are_ignored() -> None:
    assert (
        "message_reaction_count updates are not handled"
        in only(load("message_reaction_count"), Ignored).reason
    )
    assert "chat_member updates are not handled" in only(load("chat_member"), Ignored).reason


def test_my_chat_member() -> None:
    update = load("my_chat_member")
    raw = update["my_chat_member"]
    event = only(update, ChatMembership)
    assert event.chat.external_id == str(raw["chat"]["id"])
    assert event.status == raw["new_chat_member"]["status"]
    assert event.username == raw["chat"]["username"]
    assert event.rights == {}  # a creator carries no can_* fields
    assert_party(event.by, raw["from"])
    assert event.at == at(raw["date"])


def test_my_chat_member_promoted_to_administrator_with_rights() -> None:
    update = load("my_chat_member")
    raw = update["my_chat_member"]
    raw["chat"] = {"id": -1001234567489, "title": "Testing", "username": "testing", "type": "supergroup"}
    raw["new_chat_member"] = {
        "status": "administrator",
        "user": raw["new_chat_member"]["user"],
        "can_be_edited": False,
        "is_anonymous": False,
        "can_manage_chat": True,
        "can_delete_messages": True,
        "can_manage_video_chats": False,
        "can_restrict_members": True,
        "can_promote_members": False,
        "can_change_info": False,
        "can_invite_users": True,
        "can_post_stories": False,
        "can_edit_stories": False,
        "can_delete_stories": False,
        "can_pin_messages": True,
        "can_manage_topics": False,
        "custom_title": "bot",
    }
    event = only(update, ChatMembership)
    assert event.status == "administrator"
    assert event.chat.kind == ConversationKind.GROUP
    assert event.username == raw["chat"]["username"]
    expected = {k: v for k, v in raw["new_chat_member"].items() if k.startswith("can_")}
    assert event.rights == expected
    assert "is_anonymous" not in event.rights


@pytest.mark.parametrize("status", ["kicked", "left"])
def test_my_chat_member_removed(status: str) -> None:
    update = load("my_chat_member")
    raw = update["my_chat_member"]
    raw["chat"] = {"id": -1001234567489, "title": "News", "type": "channel"}
    raw["new_chat_member"] = {"status": status, "user": raw["new_chat_member"]["user"], "until_date": 0}
    event = only(update, ChatMembership)
    assert (event.status, event.rights, event.username) == (status, {}, None)
    assert event.chat.kind == ConversationKind.CHANNEL


# --- what is ignored -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field"),
    [("migrate_to_chat_id", "migrate_to_chat_id"), ("migrate_from_chat_id", "migrate_from_chat_id")],
)
def test_a_migration_names_both_chats(name: str, field: str) -> None:
    update = load(name)
    reason = only(update, Ignored).reason
    assert str(update["message"][field]) in reason
    assert str(update["message"]["chat"]["id"]) in reason


@pytest.mark.parametrize(
    "name",
    ["new_chat_members", "left_chat_member", "new_chat_title", "pinned_message", "group_chat_created"],
)
def test_service_messages_are_ignored_with_the_service_named(name: str) -> None:
    assert name in only(load(name), Ignored).reason


@pytest.mark.parametrize(
    "name",
    ["inline_query", "chosen_inline_result", "shipping_query", "pre_checkout_query", "poll", "poll_answer",
     "chat_join_request", "chat_boost", "removed_chat_boost", "business_connection", "paid_media_purchased"],
)  # fmt: skip
def test_other_update_kinds_are_not_handled(name: str) -> None:
    update = load(name)
    assert only(update, Ignored).reason.startswith(f"{payload_kind(update)} updates are not handled")
