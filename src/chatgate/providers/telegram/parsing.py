"""Parse Telegram Bot API webhook bodies (one `Update` each) into provider-neutral events (pure).

`update_id(body)` is the dedupe key; `parse_update(body)` returns the events. Only a body that
is not an Update at all (not JSON, not an object, no integer `update_id`) raises `InvalidInput`.
Any Update, including kinds added in future Bot API versions and Updates missing a field we
need, yields events or an `Ignored` that names what was skipped and why.

Ids are strings. Telegram message ids are unique only per chat, so a message is
`"{chat_id}:{message_id}"`. Chat types map private → private, group/supergroup → group,
channel → channel. A sender is `sender_chat` when present (channel posts, anonymous admins,
posts on behalf of a channel), else `from`, else the chat itself.

| Update field                                          | event                                |
|-------------------------------------------------------|--------------------------------------|
| message, channel_post, business_message               | ReceivedMessage (or Ignored, below)  |
| edited_message, edited_channel_post, edited_business_message | EditedMessage (edited_at = edit_date) |
| deleted_business_messages                             | DeletedMessages                      |
| callback_query                                        | ButtonPressed                        |
| message_reaction                                      | Reaction                             |
| my_chat_member                                        | ChatMembership                       |
| chat_member, message_reaction_count, anything else    | Ignored("<field> updates are not handled…") |

A ButtonPressed carries the chat and `"{chat_id}:{message_id}"` of the message with the button,
also when that message is an InaccessibleMessage (date 0); a button on an inline-mode message
has neither. A Reaction's emoji is the first emoji of `new_reaction`, else "custom:<id>" for a
custom emoji, "paid" for a star reaction, "" when removed; an anonymous reactor is `actor_chat`.
ChatMembership: status of `new_chat_member`, rights = its boolean can_* fields, by = `from`.

Message content (text = text or caption; entities/caption_entities → extra["entities"]):

| Message field      | Attachment                                                            |
|--------------------|-----------------------------------------------------------------------|
| photo              | image, image/jpeg: the PhotoSize with the most pixels                 |
| document           | document (skipped when `animation` is set: Telegram repeats it there) |
| audio / voice      | audio / voice (voice defaults to audio/ogg)                           |
| video, video_note  | video (video_note: extra video_note=True, video/mp4)                  |
| animation          | video, extra animation=True                                           |
| sticker            | sticker: video/webm, application/x-tgsticker or image/webp            |
| location, venue    | one location: extra latitude/longitude (+ title/address for a venue)  |
| contact            | contact: extra phone_number/first_name/last_name/user_id/vcard        |
| dice, poll, game, checklist, story, invoice, rich_message, paid_media | other: extra type + summary |

Dice, polls, games and the like are things a person posts into the conversation, so they are
kept as a text-less message with an "other" attachment rather than dropped; an inbox can show
them. A live photo arrives as its still `photo`. Service messages (members joined or left,
title/photo changes, pins, topics, boosts, giveaways, payments, video chats, migrations…) and
messages with no content we understand become `Ignored`; a migration names both chat ids.

Message `extra` stays small: message_thread_id, media_group_id, business_connection_id (needed
to answer a business chat), entities, forward_origin (a summary) and via_bot, when present.
In a forum topic Telegram sets `reply_to_message` to the topic's opening service message even
without a reply; that implicit reply is dropped (the thread is in extra["message_thread_id"]).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chatgate.domain.errors import InvalidInput
from chatgate.domain.inbound import (
    ButtonPressed,
    ChatMembership,
    ChatRef,
    DeletedMessages,
    EditedMessage,
    Ignored,
    Party,
    ProviderEvent,
    Reaction,
    ReceivedMessage,
)
from chatgate.domain.messages import ConversationKind
from chatgate.providers.telegram.attachments import (
    Malformed,
    as_obj,
    message_attachments,
    no_content,
    opt_int,
    opt_obj,
    opt_str,
    req_int,
)

_CHAT_KINDS = {
    "private": ConversationKind.PRIVATE,
    "group": ConversationKind.GROUP,
    "supergroup": ConversationKind.GROUP,
    "channel": ConversationKind.CHANNEL,
}


def _load(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"the Telegram update is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidInput("the Telegram update must be a JSON object")
    value = payload.get("update_id")
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput("the Telegram update has no integer 'update_id'")
    return payload


def update_id(body: bytes) -> str:
    """The Update's `update_id` as a string: Telegram's dedupe key for webhook re-deliveries."""
    return str(_load(body)["update_id"])


def _name(raw: dict[str, Any]) -> str | None:
    name = " ".join(n for n in (opt_str(raw, "first_name"), opt_str(raw, "last_name")) if n)
    return opt_str(raw, "title") or name or None


def _chat(raw: Any, where: str) -> ChatRef:
    chat = as_obj(raw, where)
    chat_id = req_int(chat, "id", where)
    kind = _CHAT_KINDS.get(str(chat.get("type")))
    if kind is None:  # a chat type from a future Bot API: negative ids are groups and channels
        kind = ConversationKind.GROUP if chat_id < 0 else ConversationKind.PRIVATE
    return ChatRef(str(chat_id), kind, _name(chat))


def _party(raw: dict[str, Any], where: str) -> Party:
    """A User or a Chat as a sender: both have an id, names or a title, and a username."""
    return Party(str(req_int(raw, "id", where)), _name(raw), opt_str(raw, "username"))


def _sender(message: dict[str, Any], kind: str) -> Party:
    for key in ("sender_chat", "from", "chat"):
        raw = opt_obj(message, key)
        if raw is not None:
            return _party(raw, f"{kind}.{key}")
    raise Malformed(f"'{kind}' has no sender")  # unreachable: the chat was read before


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def _reply_to(message: dict[str, Any], chat_id: str) -> str | None:
    reply = opt_obj(message, "reply_to_message")
    reply_id = opt_int(reply, "message_id") if reply else None
    if reply_id is None:
        return None
    if message.get("is_topic_message") is True and reply_id == opt_int(message, "message_thread_id"):
        return None  # not a reply: every topic message points at the topic's opening message
    return f"{chat_id}:{reply_id}"


def _forward(origin: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"type": origin.get("type"), "date": _iso(origin.get("date"))}
    source = opt_obj(origin, "sender_user") or opt_obj(origin, "sender_chat") or opt_obj(origin, "chat")
    if source is not None:
        summary.update(id=_id(source), name=_name(source), username=opt_str(source, "username"))
    elif opt_str(origin, "sender_user_name"):
        summary["name"] = origin["sender_user_name"]
    if opt_int(origin, "message_id") is not None:
        summary["message_id"] = origin["message_id"]
    return {key: value for key, value in summary.items() if value is not None}


def _id(raw: dict[str, Any]) -> str | None:
    value = opt_int(raw, "id")
    return None if value is None else str(value)


def _iso(value: Any) -> str | None:
    stamp = _timestamp(value)
    return stamp.isoformat() if stamp else None


def _extra(message: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for key in ("message_thread_id", "media_group_id", "business_connection_id"):
        if message.get(key) is not None:
            extra[key] = message[key]
    entities = message.get("entities") or message.get("caption_entities")
    if isinstance(entities, list) and entities:
        extra["entities"] = entities
    origin = opt_obj(message, "forward_origin")
    if origin is not None:
        extra["forward_origin"] = _forward(origin)
    via_bot = opt_obj(message, "via_bot")
    if via_bot is not None:
        extra["via_bot"] = {"id": _id(via_bot), "username": opt_str(via_bot, "username")}
    return extra


def _message(kind: str, raw: Any) -> list[ProviderEvent]:
    message = as_obj(raw, kind)
    chat = _chat(message.get("chat"), f"{kind}.chat")
    ref = f"{chat.external_id}:{req_int(message, 'message_id', kind)}"
    text = opt_str(message, "text") or opt_str(message, "caption")
    attachments = message_attachments(message)
    if text is None and not attachments:
        return [no_content(kind, ref, message)]
    sender = _sender(message, kind)
    if kind.startswith("edited_"):
        edited_at = _timestamp(message.get("edit_date"))
        return [EditedMessage(ref, chat, sender, text, attachments, edited_at)]
    reply_to = _reply_to(message, chat.external_id)
    sent_at = _timestamp(message.get("date"))
    return [ReceivedMessage(ref, chat, sender, text, attachments, reply_to, sent_at, _extra(message))]


def _deleted(kind: str, raw: Any) -> list[ProviderEvent]:
    update = as_obj(raw, kind)
    chat = _chat(update.get("chat"), f"{kind}.chat")
    ids = update.get("message_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise Malformed(f"'{kind}.message_ids' must be a list of integers")
    if not ids:
        return [Ignored(f"{kind} for chat {chat.external_id} lists no message ids")]
    return [DeletedMessages(chat, tuple(f"{chat.external_id}:{i}" for i in ids))]


def _callback(kind: str, raw: Any) -> list[ProviderEvent]:
    query = as_obj(raw, kind)
    callback_id = opt_str(query, "id")
    if callback_id is None:
        raise Malformed(f"'{kind}.id' must be a non-empty string")
    sender = _party(as_obj(query.get("from"), f"{kind}.from"), f"{kind}.from")
    chat: ChatRef | None = None
    ref: str | None = None
    # A Message, or an InaccessibleMessage (date 0: too old or deleted) whose chat and id still
    # hold; absent for buttons on inline-mode messages, which belong to no chat of the bot.
    message = opt_obj(query, "message")
    if message is not None and opt_obj(message, "chat") is not None:
        chat = _chat(message["chat"], f"{kind}.message.chat")
        message_id = opt_int(message, "message_id")
        ref = f"{chat.external_id}:{message_id}" if message_id is not None else None
    data = query.get("data")
    return [ButtonPressed(callback_id, sender, data if isinstance(data, str) else None, chat, ref)]


def _reaction_emoji(reactions: Any) -> str:
    """The first emoji reaction, else the first custom one ("custom:<id>"), else "paid" for a
    paid (star) reaction; "" when the reactions were removed."""
    items = [r for r in reactions if isinstance(r, dict)] if isinstance(reactions, list) else []
    for item in items:
        if item.get("type") == "emoji" and opt_str(item, "emoji"):
            return str(item["emoji"])
    for item in items:
        if item.get("type") == "custom_emoji" and opt_str(item, "custom_emoji_id"):
            return f"custom:{item['custom_emoji_id']}"
    return "paid" if any(item.get("type") == "paid" for item in items) else ""


def _reaction(kind: str, raw: Any) -> list[ProviderEvent]:
    update = as_obj(raw, kind)
    chat = _chat(update.get("chat"), f"{kind}.chat")
    ref = f"{chat.external_id}:{req_int(update, 'message_id', kind)}"
    actor = opt_obj(update, "user") or opt_obj(update, "actor_chat")  # actor_chat: anonymous admins
    sender = _party(actor, f"{kind}.actor") if actor is not None else _sender(update, kind)
    emoji = _reaction_emoji(update.get("new_reaction"))
    return [Reaction(chat, sender, ref, emoji, _timestamp(update.get("date")))]


def _my_chat_member(kind: str, raw: Any) -> list[ProviderEvent]:
    update = as_obj(raw, kind)
    chat_raw = as_obj(update.get("chat"), f"{kind}.chat")
    member = as_obj(update.get("new_chat_member"), f"{kind}.new_chat_member")
    status = opt_str(member, "status")
    if status is None:
        raise Malformed(f"'{kind}.new_chat_member.status' must be a non-empty string")
    rights = {k: v for k, v in member.items() if k.startswith("can_") and isinstance(v, bool)}
    by_raw = opt_obj(update, "from")
    return [
        ChatMembership(
            chat=_chat(chat_raw, f"{kind}.chat"),
            status=status,
            username=opt_str(chat_raw, "username"),
            rights=rights,
            by=_party(by_raw, f"{kind}.from") if by_raw is not None else None,
            at=_timestamp(update.get("date")),
        )
    ]


def _ignore(why: str) -> Callable[[str, Any], list[ProviderEvent]]:
    return lambda kind, raw: [Ignored(f"{kind} updates are not handled: {why}")]


_HANDLERS: dict[str, Callable[[str, Any], list[ProviderEvent]]] = {
    "message": _message,
    "channel_post": _message,
    "business_message": _message,
    "edited_message": _message,
    "edited_channel_post": _message,
    "edited_business_message": _message,
    "deleted_business_messages": _deleted,
    "callback_query": _callback,
    "message_reaction": _reaction,
    "my_chat_member": _my_chat_member,
    "chat_member": _ignore("they report other users' membership; the bot's own is my_chat_member"),
    "message_reaction_count": _ignore("anonymous reaction totals have no event type"),
    "guest_message": _ignore("a guest message is answered with answerGuestQuery, not in a chat of ours"),
}


def parse_update(body: bytes) -> list[ProviderEvent]:
    """The events one webhook body carries; `Ignored` (with why) for what we do not handle."""
    payload = _load(body)
    kinds = [key for key, value in payload.items() if key != "update_id" and value is not None]
    if not kinds:
        return [Ignored("the update carries nothing besides its update_id")]
    kind = next((k for k in kinds if k in _HANDLERS), kinds[0])  # "at most one" per the spec
    handler = _HANDLERS.get(kind)
    if handler is None:
        return [Ignored(f"{kind} updates are not handled")]
    try:
        return handler(kind, payload[kind])
    except Malformed as exc:
        return [Ignored(f"{kind} update skipped, it is malformed: {exc}")]
