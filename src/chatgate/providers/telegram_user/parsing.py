"""Telethon events → stored raw payloads → provider-neutral events.

Two halves, so the runtime can store an update durably before processing it:

* `raw_update(event)`: a Telethon event object (`events.NewMessage.Event`,
  `events.MessageEdited.Event`, `events.MessageDeleted.Event`, `events.MessageRead.Event`) →
  `RawAccountUpdate(key, payload)`, a JSON-able dict in our own small schema (below) plus, under
  "tl", Telethon's own `to_dict()` of the original update (bytes as {"_bytes": base64},
  datetimes as ISO strings) for audits; parsing never reads "tl".
* `parse_payload(payload)`: the stored dict alone → `ProviderEvent`s. Pure; an update we do not
  handle, or one missing a field we need, becomes `Ignored` with the reason.

`account_update(event)` does both, as the clients do before calling the update handler.

Ids follow the Bot API parser (`providers/telegram/parsing.py`): chat ids are Telethon's marked
ids (user `id`, basic group `-id`, supergroup/channel `-100…id`), a message is
`"{chat_id}:{message_id}"`, chats are private (users), group (basic groups, supergroups) or
channel (broadcast channels). A supergroup/channel whose entity Telegram did not include is a
channel when the message is a channel post, else a group.

| payload "type" | from                          | events                                            |
|----------------|-------------------------------|---------------------------------------------------|
| message        | NewMessage                    | ReceivedMessage; Ignored for the account's own (outgoing) messages and messages without text or media we understand |
| edit           | MessageEdited                 | EditedMessage (edited_at = edit_date); Ignored when edit_date is missing (a reaction, view count or pin changed, not the content) and for own messages |
| delete         | MessageDeleted                | DeletedMessages; see below for private chats and basic groups |
| read           | MessageRead (outbox)          | StatusUpdate(READ) with provider_message_id `"{chat_id}:{max_id}"` |
| unparsed       | an event we failed to read    | Ignored (with the error; "tl" keeps the update)   |

Read receipts: Telegram says "everything up to max_id in this chat was read", not which
messages; the account runtime lists our sent, unread messages of that chat with an id up to
`max_id` in the payload ("read_ids", only it knows which exist) and each becomes READ, as does
`max_id`. An inbox read (the account read messages in another app) is Ignored.

Deletions: in private chats and basic groups Telegram does not say in which chat the messages
were (their ids are unique per account), so the payload has no chat. The account runtime looks
the ids (`unplaced_deleted_ids(payload)`) up among the stored messages and adds their chats to
the payload ("placed"); `parse_payload(payload, chats={message_id: ChatRef})` may give them
instead. Ids nobody could place (a message we never stored) become `Ignored`.

Media (one attachment; `provider_file_id` is `"{chat_id}:{message_id}"`, which later code
downloads through the account): photo → image (image/jpeg, the largest size); document → sticker,
voice, audio, video (gif: extra animation; round video: extra video_note) or document, with mime
type, size and file name; geo/venue → location; contact → contact; dice, polls, games, invoices,
stories, giveaways… → other with extra type (and a summary). A link preview is not an attachment.

Payload schema (version "v": 1):

    {"v": 1, "type": "message" | "edit",
     "chat": {"id": int, "kind": "private" | "group" | "channel", "title": str?, "username": str?},
     "message": {"id", "date" (unix), "edit_date"?, "out": bool, "text": str, "sender": {"id",
       "type": "user" | "chat" | "channel", "username", "first_name", "last_name", "title",
       "phone", "bot"}?, "reply_to": {"id", "chat_id"?}?, "thread_id"?, "media": {"type",
       "kind", "mime_type", "size", "file_name", "file_id", "extra"}?, "entities": [...]?,
       "grouped_id"?, "forward"?, "via_bot_id"?, "post_author"?},
     "tl": {...}}
    {"v": 1, "type": "delete", "chat": {...} | null, "ids": [int, ...], "tl": {...},
     "placed": {"<id>": {chat}}?}
    {"v": 1, "type": "read", "chat": {...}, "max_id": int, "outbox": bool, "tl": {...},
     "read_ids": [int, ...]?}

"placed" and "read_ids" are added by the account runtime when it stores the update (from its
own store: the chats of our stored messages with those ids; our sent, unread messages of the
chat up to max_id); parsing reads them, never the database.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from telethon import events, utils  # type: ignore[import-untyped, unused-ignore]
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
from chatgate.providers.telegram.attachments import Malformed, opt_int, opt_obj, opt_str
from chatgate.providers.telegram_user.client import RawAccountUpdate

PAYLOAD_VERSION = 1


# --- Telethon objects → payload ------------------------------------------------------------


def account_update(event: Any) -> tuple[RawAccountUpdate, list[ProviderEvent]] | None:
    """The raw update and its events for a Telethon event (None: not an event type of ours)."""
    raw = raw_update(event)
    return None if raw is None else (raw, parse_payload(raw.payload))


def raw_update(event: Any) -> RawAccountUpdate | None:
    """The `RawAccountUpdate` for a Telethon event (None: not an event type of ours).

    Never raises for an event of ours: one we fail to read (a TL shape from a newer layer, say)
    becomes an "unparsed" payload with the error and Telethon's dict, so it is still stored.
    """
    try:
        if isinstance(event, events.MessageEdited.Event):
            return _message_update("edit", event)
        if isinstance(event, events.NewMessage.Event):
            return _message_update("message", event)
        if isinstance(event, events.MessageDeleted.Event):
            return _deleted_update(event)
        if isinstance(event, events.MessageRead.Event):
            return _read_update(event)
    except Exception as exc:  # noqa: BLE001 - kept as data, reported by parse_payload as Ignored
        tl = _tl(event, getattr(event, "message", None))
        digest = hashlib.sha256(json.dumps(tl, sort_keys=True).encode()).hexdigest()[:32]
        payload = {
            "v": PAYLOAD_VERSION,
            "type": "unparsed",
            "event": str(getattr(event, "_event_name", type(event).__name__)),
            "error": f"{type(exc).__name__}: {exc}",
            "tl": tl,
        }
        return RawAccountUpdate(f"unparsed:{digest}", payload)
    return None


def _message_update(kind: str, event: Any) -> RawAccountUpdate:
    message = event.message
    payload = message_payload(message, kind=kind)
    payload["tl"] = _tl(event, message)
    chat_id = payload["chat"]["id"]
    if kind == "edit":
        key = f"edit:{chat_id}:{message.id}:{payload['message'].get('edit_date') or 0}"
    else:
        key = f"msg:{chat_id}:{message.id}"
    return RawAccountUpdate(key, payload)


def message_payload(message: Any, *, kind: str = "message") -> dict[str, Any]:
    """Our payload (without "tl") for a Telethon `Message`; `kind` is "message" or "edit"."""
    chat = _chat_info(message.peer_id, getattr(message, "chat", None), post=bool(message.post))
    chat_id = chat["id"]
    body: dict[str, Any] = {
        "id": int(message.id),
        "date": _ts(message.date),
        "edit_date": _ts(message.edit_date),
        "out": bool(message.out),
        "text": message.message or "",
        "sender": _sender_info(message),
    }
    body.update(_reply_info(message.reply_to))
    media = _media_info(message.media, f"{chat_id}:{message.id}")
    extras = {
        "media": media,
        "entities": [_entity(e) for e in message.entities or ()] or None,
        "grouped_id": message.grouped_id,
        "forward": _forward_info(message.fwd_from),
        "via_bot_id": message.via_bot_id,
        "post_author": message.post_author,
    }
    body.update({k: v for k, v in extras.items() if v is not None})
    return {"v": PAYLOAD_VERSION, "type": kind, "chat": chat, "message": body}


def _deleted_update(event: Any) -> RawAccountUpdate:
    ids = [int(i) for i in event.deleted_ids or ()]
    chat = None
    if event.chat_id is not None:  # only channels and supergroups say where
        chat = _chat_info(utils.get_peer(event.chat_id), getattr(event, "chat", None))
    payload = {"v": PAYLOAD_VERSION, "type": "delete", "chat": chat, "ids": ids, "tl": _tl(event, None)}
    where = "" if chat is None else chat["id"]
    return RawAccountUpdate(f"del:{where}:{','.join(str(i) for i in ids)}", payload)


def _read_update(event: Any) -> RawAccountUpdate:
    chat = None
    if event.chat_id is not None:  # contents reads (a voice note played) name no chat
        chat = _chat_info(utils.get_peer(event.chat_id), getattr(event, "chat", None))
    outbox = bool(event.outbox)
    payload = {
        "v": PAYLOAD_VERSION,
        "type": "read",
        "chat": chat,
        "max_id": event.max_id,
        "outbox": outbox,
        "tl": _tl(event, None),
    }
    where = "" if chat is None else chat["id"]
    return RawAccountUpdate(f"{'read' if outbox else 'read-in'}:{where}:{event.max_id}", payload)


def _tl(event: Any, message: Any) -> dict[str, Any]:
    original = getattr(event, "original_update", None) or message
    if original is None or not hasattr(original, "to_dict"):
        return {}
    value = jsonable(original.to_dict())
    return value if isinstance(value, dict) else {}


def jsonable(value: Any) -> Any:
    """Telethon's `to_dict()` output made JSON-safe (bytes → {"_bytes": base64}, datetimes ISO)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return {"_bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _ts(value: Any) -> int | None:
    return int(value.timestamp()) if isinstance(value, datetime) else None


def entity_kind(entity: Any, peer: Any = None, *, post: bool = False) -> ConversationKind:
    """private / group / channel for a Telethon entity (User, Chat, Channel…), else its peer."""
    if isinstance(entity, types.User):
        return ConversationKind.PRIVATE
    if isinstance(entity, types.Channel | types.ChannelForbidden):
        return ConversationKind.CHANNEL if entity.broadcast else ConversationKind.GROUP
    if entity is not None and hasattr(entity, "title"):  # Chat, ChatForbidden, newer chat-like types
        return ConversationKind.GROUP
    if isinstance(peer, types.PeerUser):
        return ConversationKind.PRIVATE
    if isinstance(peer, types.PeerChannel):
        return ConversationKind.CHANNEL if post else ConversationKind.GROUP
    return ConversationKind.GROUP


def entity_title(entity: Any) -> str | None:
    if entity is None:
        return None
    return str(utils.get_display_name(entity)) or None


def entity_username(entity: Any) -> str | None:
    username = getattr(entity, "username", None)
    if username:
        return str(username)
    for item in getattr(entity, "usernames", None) or ():  # collectible usernames: the first active one
        if getattr(item, "active", False) and getattr(item, "username", None):
            return str(item.username)
    return None


def _chat_info(peer: Any, entity: Any, *, post: bool = False) -> dict[str, Any]:
    return {
        "id": int(utils.get_peer_id(peer)),
        "kind": entity_kind(entity, peer, post=post).value,
        "title": entity_title(entity),
        "username": entity_username(entity),
    }


def _sender_info(message: Any) -> dict[str, Any] | None:
    sender_id = message.sender_id
    if sender_id is None:
        return None
    entity = getattr(message, "sender", None)
    info: dict[str, Any] = {"id": int(sender_id), "type": "user" if sender_id > 0 else "channel"}
    if isinstance(entity, types.User):
        info.update(
            username=entity_username(entity),
            first_name=entity.first_name,
            last_name=entity.last_name,
            phone=f"+{str(entity.phone).removeprefix('+')}" if entity.phone else None,
            bot=bool(entity.bot),
        )
    elif entity is not None:
        info.update(
            type="channel" if isinstance(entity, types.Channel | types.ChannelForbidden) else "chat",
            title=getattr(entity, "title", None),
            username=entity_username(entity),
        )
    return {k: v for k, v in info.items() if v is not None}


def _reply_info(reply: Any) -> dict[str, Any]:
    if not isinstance(reply, types.MessageReplyHeader) or reply.reply_to_msg_id is None:
        return {}
    msg_id, top = int(reply.reply_to_msg_id), reply.reply_to_top_id
    if reply.forum_topic and top is None:  # in a forum topic: points at the topic, not a reply
        return {"thread_id": msg_id}
    info: dict[str, Any] = {"reply_to": {"id": msg_id}}
    if reply.reply_to_peer_id is not None:
        info["reply_to"]["chat_id"] = int(utils.get_peer_id(reply.reply_to_peer_id))
    if top is not None:
        info["thread_id"] = int(top)
    return info


def _forward_info(fwd: Any) -> dict[str, Any] | None:
    if fwd is None:
        return None
    info = {
        "date": _ts(fwd.date),
        "from_id": int(utils.get_peer_id(fwd.from_id)) if fwd.from_id is not None else None,
        "name": fwd.from_name,
        "message_id": fwd.channel_post,
        "post_author": fwd.post_author,
    }
    return {k: v for k, v in info.items() if v is not None}


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _entity(entity: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "type": _snake(type(entity).__name__.removeprefix("MessageEntity")),
        "offset": entity.offset,
        "length": entity.length,
    }
    for field in ("url", "user_id", "language", "document_id"):
        value = getattr(entity, field, None)
        if value is not None:
            info[field] = value
    return info


def _attribute(document: Any, cls: Any) -> Any:
    return next((a for a in document.attributes or () if isinstance(a, cls)), None)


def _document_info(document: Any, file_id: str) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    sticker = _attribute(document, types.DocumentAttributeSticker)
    audio = _attribute(document, types.DocumentAttributeAudio)
    video = _attribute(document, types.DocumentAttributeVideo)
    animated = _attribute(document, types.DocumentAttributeAnimated)
    if sticker is not None:
        kind = "sticker"
        extra["emoji"] = sticker.alt
    elif audio is not None:
        kind = "voice" if audio.voice else "audio"
        extra.update(duration=audio.duration, title=audio.title, performer=audio.performer)
    elif animated is not None:
        kind, extra["animation"] = "video", True
    elif video is not None:
        kind = "video"
        extra.update(duration=video.duration, width=video.w, height=video.h)
        if video.round_message:
            extra["video_note"] = True
    else:
        kind = "document"
    name = _attribute(document, types.DocumentAttributeFilename)
    return {
        "type": "document",
        "kind": kind,
        "mime_type": document.mime_type or None,
        "size": int(document.size) if document.size is not None else None,
        "file_name": name.file_name if name is not None else None,
        "file_id": file_id,
        "extra": {k: v for k, v in extra.items() if v is not None},
    }


def _photo_bytes(size: Any) -> int | None:
    if isinstance(size, types.PhotoSizeProgressive):
        return max(size.sizes, default=None)
    if isinstance(size, types.PhotoCachedSize):
        return len(size.bytes)
    value = getattr(size, "size", None)
    return value if isinstance(value, int) else None


def _photo_info(photo: Any, file_id: str) -> dict[str, Any]:
    sizes = [s for s in photo.sizes or () if hasattr(s, "w") and hasattr(s, "h")]
    largest = max(sizes, key=lambda s: s.w * s.h, default=None)
    size = _photo_bytes(largest) if largest is not None else None
    extra = {"width": largest.w, "height": largest.h} if largest is not None else {}
    return {
        "type": "photo",
        "kind": "image",
        "mime_type": "image/jpeg",
        "size": size,
        "file_name": None,
        "file_id": file_id,
        "extra": extra,
    }


def _other(media: Any) -> dict[str, Any]:
    name = _snake(type(media).__name__.removeprefix("MessageMedia"))
    extra: dict[str, Any] = {"type": name}
    if isinstance(media, types.MessageMediaDice):
        extra.update(emoji=media.emoticon, value=media.value)
    elif isinstance(media, types.MessageMediaPoll):
        question = media.poll.question
        extra["question"] = str(getattr(question, "text", question))  # TextWithEntities since layer 178
    elif hasattr(media, "title") and isinstance(media.title, str):  # game, invoice
        extra["title"] = media.title
    return {"type": name, "kind": "other", "extra": extra}


def _media_info(media: Any, file_id: str) -> dict[str, Any] | None:
    if media is None or isinstance(media, types.MessageMediaEmpty):
        return None
    if isinstance(media, types.MessageMediaPhoto):
        if not isinstance(media.photo, types.Photo):
            return {"type": "photo", "kind": None, "extra": {"expired": True}}  # a self-destructed photo
        return _photo_info(media.photo, file_id)
    if isinstance(media, types.MessageMediaDocument):
        if not isinstance(media.document, types.Document):
            return {"type": "document", "kind": None, "extra": {"expired": True}}
        return _document_info(media.document, file_id)
    if isinstance(media, types.MessageMediaVenue):
        point = media.geo
        extra = {"latitude": getattr(point, "lat", None), "longitude": getattr(point, "long", None)}
        return {
            "type": "venue",
            "kind": "location",
            "extra": {**extra, "title": media.title, "address": media.address},
        }
    if isinstance(media, types.MessageMediaGeo | types.MessageMediaGeoLive):
        point = media.geo
        extra = {"latitude": getattr(point, "lat", None), "longitude": getattr(point, "long", None)}
        if isinstance(media, types.MessageMediaGeoLive):
            extra["live_period"] = media.period
        return {"type": "geo", "kind": "location", "extra": extra}
    if isinstance(media, types.MessageMediaContact):
        extra = {
            "phone_number": media.phone_number,
            "first_name": media.first_name,
            "last_name": media.last_name or None,
            "user_id": media.user_id or None,
            "vcard": media.vcard or None,
        }
        return {
            "type": "contact",
            "kind": "contact",
            "extra": {k: v for k, v in extra.items() if v is not None},
        }
    if isinstance(media, types.MessageMediaWebPage):
        return {"type": "webpage", "kind": None, "extra": {"url": getattr(media.webpage, "url", None)}}
    return _other(media)


# --- payload → events ----------------------------------------------------------------------


def parse_payload(
    payload: Mapping[str, Any], *, chats: Mapping[int, ChatRef] | None = None
) -> list[ProviderEvent]:
    """The events a stored payload carries. `chats` places deletions Telegram sent without a
    chat (message id → chat; see the module docstring); without it, the payload's own "placed"
    (added by the account runtime when it stored the update) does."""
    kind = payload.get("type")
    try:
        if kind in ("message", "edit"):
            return _parse_message(str(kind), payload)
        if kind == "delete":
            return _parse_delete(payload, chats if chats is not None else _placed(payload))
        if kind == "read":
            return _parse_read(payload)
        if kind == "unparsed":
            return [Ignored(f"a Telegram {payload.get('event')} could not be read: {payload.get('error')}")]
    except Malformed as exc:
        return [Ignored(f"{kind} account update skipped, it is malformed: {exc}")]
    return [Ignored(f"{kind!r} account updates are not handled")]


def _chat_ref(raw: Any) -> ChatRef:
    if not isinstance(raw, dict):
        raise Malformed("'chat' must be an object")
    chat_id = opt_int(raw, "id")
    if chat_id is None:
        raise Malformed("'chat.id' must be an integer")
    try:
        kind = ConversationKind(str(raw.get("kind")))
    except ValueError:
        kind = ConversationKind.PRIVATE if chat_id > 0 else ConversationKind.GROUP
    return ChatRef(str(chat_id), kind, opt_str(raw, "title"))


def _stamp(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def _party(sender: dict[str, Any] | None, chat: ChatRef) -> Party:
    if sender is None or opt_int(sender, "id") is None:
        return Party(chat.external_id, chat.title)  # channel posts, or a sender Telegram left out
    name = " ".join(n for n in (opt_str(sender, "first_name"), opt_str(sender, "last_name")) if n)
    return Party(
        str(sender["id"]),
        opt_str(sender, "title") or name or None,
        opt_str(sender, "username"),
        opt_str(sender, "phone"),
    )


def _attachment(media: dict[str, Any] | None) -> tuple[Attachment, ...]:
    if media is None or opt_str(media, "kind") is None:
        return ()
    extra = opt_obj(media, "extra") or {}
    return (
        Attachment(
            kind=str(media["kind"]),
            mime_type=opt_str(media, "mime_type"),
            size=opt_int(media, "size"),
            file_name=opt_str(media, "file_name"),
            provider_file_id=opt_str(media, "file_id"),
            extra=dict(extra),
        ),
    )


def _message_extra(message: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if opt_int(message, "grouped_id") is not None:
        extra["media_group_id"] = str(message["grouped_id"])
    if opt_int(message, "thread_id") is not None:
        extra["message_thread_id"] = message["thread_id"]
    entities = message.get("entities")
    if isinstance(entities, list) and entities:
        extra["entities"] = entities
    forward = opt_obj(message, "forward")
    if forward is not None:
        extra["forward_origin"] = forward
    if opt_int(message, "via_bot_id") is not None:
        extra["via_bot"] = {"id": str(message["via_bot_id"])}
    if opt_str(message, "post_author") is not None:
        extra["post_author"] = message["post_author"]
    return extra


def _parse_message(kind: str, payload: Mapping[str, Any]) -> list[ProviderEvent]:
    chat = _chat_ref(payload.get("chat"))
    message = payload.get("message")
    if not isinstance(message, dict):
        raise Malformed("'message' must be an object")
    message_id = opt_int(message, "id")
    if message_id is None:
        raise Malformed("'message.id' must be an integer")
    ref = f"{chat.external_id}:{message_id}"
    what = "an edit of" if kind == "edit" else "message"
    if message.get("out") is True:
        return [Ignored(f"{what} {ref} is the account's own (sent from chatgate or another of its apps)")]
    text = opt_str(message, "text")
    attachments = _attachment(opt_obj(message, "media"))
    if text is None and not attachments:
        media = opt_obj(message, "media")
        detail = f" ({media.get('type')})" if media else ""
        return [Ignored(f"{what} {ref} has no text or media we understand{detail}")]
    sender = _party(opt_obj(message, "sender"), chat)
    if kind == "edit":
        edited_at = _stamp(message.get("edit_date"))
        if edited_at is None:
            return [Ignored(f"message {ref} changed without an edit (reactions, views or a pin)")]
        return [EditedMessage(ref, chat, sender, text, attachments, edited_at)]
    reply = opt_obj(message, "reply_to")
    reply_to = None
    if reply is not None and opt_int(reply, "id") is not None:
        reply_to = f"{opt_int(reply, 'chat_id') or chat.external_id}:{reply['id']}"
    sent_at = _stamp(message.get("date"))
    return [ReceivedMessage(ref, chat, sender, text, attachments, reply_to, sent_at, _message_extra(message))]


def _ids(payload: Mapping[str, Any]) -> list[int]:
    ids = payload.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise Malformed("'ids' must be a list of integers")
    return ids


def unplaced_deleted_ids(payload: Mapping[str, Any]) -> list[int]:
    """The message ids of a "delete" payload that came without a chat (to look up by the runtime)."""
    if payload.get("type") != "delete" or payload.get("chat") is not None:
        return []
    try:
        return _ids(payload)
    except Malformed:
        return []


def _parse_delete(payload: Mapping[str, Any], chats: Mapping[int, ChatRef]) -> list[ProviderEvent]:
    ids = _ids(payload)
    if not ids:
        return [Ignored("a deletion that lists no message ids")]
    if payload.get("chat") is not None:
        chat = _chat_ref(payload["chat"])
        return [DeletedMessages(chat, tuple(f"{chat.external_id}:{i}" for i in ids))]
    placed: dict[str, tuple[ChatRef, list[int]]] = {}
    unplaced: list[int] = []
    for message_id in ids:
        found = chats.get(message_id)
        if found is None:
            unplaced.append(message_id)
        else:
            placed.setdefault(found.external_id, (found, []))[1].append(message_id)
    result: list[ProviderEvent] = [
        DeletedMessages(chat, tuple(f"{chat.external_id}:{i}" for i in chat_ids))
        for chat, chat_ids in placed.values()
    ]
    if unplaced:
        listed = ", ".join(str(i) for i in unplaced)
        result.append(
            Ignored(
                f"deleted messages {listed}: Telegram does not say in which private chat or basic group "
                "they were, and no known chat was given for them"
            )
        )
    return result


def _placed(payload: Mapping[str, Any]) -> dict[int, ChatRef]:
    placed = payload.get("placed")
    if not isinstance(placed, dict):
        return {}
    found: dict[int, ChatRef] = {}
    for key, chat in placed.items():
        if str(key).isdigit() and isinstance(chat, dict):
            found[int(key)] = _chat_ref(chat)
    return found


def _parse_read(payload: Mapping[str, Any]) -> list[ProviderEvent]:
    """A READ status ("read up to max_id") for `max_id` and for each of the earlier sent messages
    the runtime listed under "read_ids" (only it knows which of ours exist)."""
    if payload.get("outbox") is not True:
        return [Ignored("the account read incoming messages (in another of its apps)")]
    if payload.get("chat") is None:
        return [Ignored("a read receipt without a chat")]
    chat = _chat_ref(payload["chat"])
    max_id = opt_int(dict(payload), "max_id")
    if max_id is None:
        raise Malformed("'max_id' must be an integer")
    listed = payload.get("read_ids")
    earlier = [
        i
        for i in (listed if isinstance(listed, list) else [])
        if isinstance(i, int) and not isinstance(i, bool) and i < max_id
    ]
    return [
        StatusUpdate(f"{chat.external_id}:{i}", MessageStatus.READ) for i in [*sorted(set(earlier)), max_id]
    ]
