"""WhatsApp Cloud API webhooks to provider-neutral events (pure).

Only `field == "messages"` changes produce events: messages from customers and statuses of
our outbound messages. Everything else (account and template updates, calls, user
preferences, message echoes…) is kept as `Ignored` with the reason. The customer's `wa_id` is
both the chat (a private conversation) and the sender's address; the wamid is the message id.

Parsing is lenient per item: an item it cannot use becomes `Ignored`, so one odd message
does not lose the others batched with it. Only a body that is not a webhook envelope at all
raises InvalidInput.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chatgate.domain.inbound import (
    Attachment,
    ChatRef,
    Ignored,
    Party,
    ProviderEvent,
    Reaction,
    ReceivedMessage,
    StatusUpdate,
)
from chatgate.domain.messages import ConversationKind, MessageStatus
from chatgate.providers.whatsapp_cloud.routing import iter_changes, load_payload

OBJECT = "whatsapp_business_account"
STATUSES = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
_LOCATION_FIELDS = ("latitude", "longitude", "name", "address", "url")
_IGNORED_TYPES = {
    "edit": "edited messages are not handled",
    "revoke": "deleted messages are not handled",
    "ephemeral": "disappearing-message notices are not handled",
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def timestamp(value: Any) -> datetime | None:
    """Meta's Unix timestamps arrive as strings ("1697043223") or numbers."""
    try:
        return datetime.fromtimestamp(int(value), UTC) if value is not None else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def parse_webhook(body: bytes) -> list[ProviderEvent]:
    payload = load_payload(body)
    kind = payload.get("object", OBJECT)
    if kind != OBJECT:
        return [Ignored(f"object {kind!r} is not a WhatsApp Business Account webhook")]
    events: list[ProviderEvent] = []
    for _, change in iter_changes(payload):
        events.extend(_change(change))
    return events or [Ignored("the webhook carries no changes")]


def _change(change: dict[str, Any]) -> list[ProviderEvent]:
    field = change.get("field")
    if field != "messages":
        return [Ignored(f"'{field}' webhooks are not handled")]
    value = _dict(change.get("value"))
    profiles = {
        str(contact["wa_id"]): contact
        for contact in value.get("contacts") or []
        if isinstance(contact, dict) and contact.get("wa_id")
    }
    events: list[ProviderEvent] = [
        _message(_dict(message), profiles) for message in value.get("messages") or []
    ]
    events.extend(_status(_dict(status)) for status in value.get("statuses") or [])
    if events:
        return events
    errors = value.get("errors")
    if isinstance(errors, list) and errors:
        return [Ignored(f"a 'messages' change reporting errors only: {_error_text(_dict(errors[0]))}")]
    return [Ignored("a 'messages' change with neither messages nor statuses")]


def _sender(wa_id: str, profiles: dict[str, Any]) -> tuple[Party, ChatRef, dict[str, Any]]:
    contact = _dict(profiles.get(wa_id))
    profile = _dict(contact.get("profile"))
    name = _text(profile.get("name"))
    party = Party(
        address=wa_id,
        display_name=name,
        username=_text(profile.get("username")),
        phone=f"+{wa_id}" if wa_id.isdigit() else None,
    )
    extra = {key: contact[key] for key in ("user_id", "parent_user_id") if _text(contact.get(key))}
    return party, ChatRef(wa_id, ConversationKind.PRIVATE, name), extra


def _media(kind: str, media: dict[str, Any]) -> Attachment:
    extra: dict[str, Any] = {}
    if _text(media.get("sha256")):
        extra["sha256"] = media["sha256"]
    if kind == "sticker" and isinstance(media.get("animated"), bool):
        extra["animated"] = media["animated"]
    voice = kind == "audio" and media.get("voice") is True
    return Attachment(
        kind="voice" if voice else kind,
        mime_type=_text(media.get("mime_type")),
        file_name=_text(media.get("filename")),
        provider_file_id=_text(media.get("id")),
        extra=extra,
    )


def _message(message: dict[str, Any], profiles: dict[str, Any]) -> ProviderEvent:
    wa_id = _text(message.get("from"))
    message_id = _text(message.get("id"))
    kind = _text(message.get("type")) or "unknown"
    if wa_id is None or message_id is None:
        return Ignored(f"a {kind} message without 'from' or 'id'")
    sender, chat, extra = _sender(wa_id, profiles)
    sent_at = timestamp(message.get("timestamp"))
    context = _dict(message.get("context"))
    for flag in ("forwarded", "frequently_forwarded"):
        if context.get(flag) is True:
            extra[flag] = True
    if isinstance(message.get("referral"), dict):
        extra["referral"] = message["referral"]
    text: str | None = None
    attachments: list[Attachment] = []
    content = _dict(message.get(kind))

    if kind == "text":
        text = _text(content.get("body"))
    elif kind in MEDIA_TYPES:
        if not _text(content.get("id")):
            return Ignored(f"a {kind} message without a media id")
        attachments.append(_media(kind, content))
        text = _text(content.get("caption"))
    elif kind == "location":
        attachments.append(
            Attachment(kind="location", extra={k: content[k] for k in _LOCATION_FIELDS if k in content})
        )
    elif kind == "contacts":
        cards = [card for card in message.get("contacts") or [] if isinstance(card, dict)]
        attachments.extend(Attachment(kind="contact", extra={"contact": card}) for card in cards)
    elif kind == "interactive":
        reply = _interactive(content)
        if isinstance(reply, Ignored):
            return reply
        text, extra["reply"] = reply
    elif kind == "button":
        text = _text(content.get("text"))
        extra["reply"] = {"type": "button", "id": content.get("payload"), "title": text}
    elif kind == "reaction":
        target = _text(content.get("message_id"))
        if target is None:
            return Ignored("a reaction without the message it reacts to")
        return Reaction(chat, sender, target, _text(content.get("emoji")) or "", sent_at)
    elif kind == "order":
        text = _text(content.get("text"))
        extra["order"] = content
    elif kind == "system":
        return Ignored(f"system message ({content.get('type')}): {content.get('body')}")
    elif kind == "unsupported":
        errors = message.get("errors")
        reason = _error_text(_dict(errors[0])) if isinstance(errors, list) and errors else "no details"
        return Ignored(f"a message type WhatsApp does not support: {reason}")
    elif kind in _IGNORED_TYPES:
        return Ignored(_IGNORED_TYPES[kind])
    else:
        return Ignored(f"message type {kind!r} is not handled")

    return ReceivedMessage(
        provider_message_id=message_id,
        chat=chat,
        sender=sender,
        text=text,
        attachments=tuple(attachments),
        reply_to_provider_id=_text(context.get("id")),
        sent_at=sent_at,
        extra=extra,
    )


def _interactive(content: dict[str, Any]) -> tuple[str | None, dict[str, Any]] | Ignored:
    """A reply to one of our interactive messages: (text, extra["reply"])."""
    kind = _text(content.get("type"))
    if kind is None:
        return Ignored("an interactive message without content (WhatsApp reported an error)")
    reply = _dict(content.get(kind))
    if kind in ("button_reply", "list_reply"):
        title = _text(reply.get("title"))
        data = {"type": kind, "id": reply.get("id"), "title": title}
        if _text(reply.get("description")):
            data["description"] = reply["description"]
        return title, data
    if kind == "nfm_reply":  # a completed WhatsApp Flow: its answers as JSON
        try:
            response = json.loads(reply.get("response_json") or "{}")
        except (TypeError, ValueError):
            response = reply.get("response_json")
        return _text(reply.get("body")), {"type": kind, "name": reply.get("name"), "response": response}
    return Ignored(f"interactive reply {kind!r} is not handled")


def _error_text(error: dict[str, Any]) -> str:
    title = _text(error.get("title")) or _text(error.get("message")) or "unknown error"
    details = _text(_dict(error.get("error_data")).get("details"))
    code = error.get("code")
    head = f"{title} (#{code})" if code is not None else title
    return f"{head}: {details}" if details and details != title else head


def _status(status: dict[str, Any]) -> ProviderEvent:
    value = _text(status.get("status")) or ""
    message_id = _text(status.get("id"))
    mapped = STATUSES.get(value)
    if mapped is None:
        return Ignored(f"status {value!r} is not tracked")
    if message_id is None:
        return Ignored(f"a {value} status without a message id")
    errors = status.get("errors")
    error = _dict(errors[0]) if isinstance(errors, list) and errors else {}
    title = _text(error.get("title")) or _text(error.get("message"))
    details = _text(_dict(error.get("error_data")).get("details"))
    message = f"{title}: {details}" if title and details and details != title else title or details
    return StatusUpdate(
        provider_message_id=message_id,
        status=mapped,
        at=timestamp(status.get("timestamp")),
        error_code=str(error["code"]) if error.get("code") is not None else None,
        error_message=message,
    )
