"""Parse the webhook provider's inbound JSON into provider-neutral events (pure).

The inbound format (documented in docs/providers/webhook.md):

    {"type": "message.received",
     "message": {"id": "m-1", "text": "hi", "reply_to": "m-0",
                 "attachments": [{"kind": "image", "url": "https://…", "mime_type": "image/png"}]},
     "from": {"id": "u-1", "name": "Alice", "username": "alice", "phone": "+15550001"},
     "conversation": {"id": "c-1", "kind": "private", "title": "Alice"}}

`message.edited` has the same shape; `message.deleted` carries `conversation` and `message_ids`;
`message.status` carries `message_id` (the id our send returned), `status` and optional `error`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chatgate.domain.errors import InvalidInput
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

_STATUSES = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"'{where}' must be an object")
    return value


def _str(container: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = container.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"'{where}.{key}' is required")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"'{where}.{key}' must be a non-empty string")
    return value


def _chat(payload: dict[str, Any]) -> ChatRef:
    conversation = _obj(payload.get("conversation"), "conversation")
    kind_text = conversation.get("kind", "private")
    try:
        kind = ConversationKind(kind_text)
    except ValueError as exc:
        raise InvalidInput("'conversation.kind' must be private, group or channel") from exc
    external_id = _str(conversation, "id", "conversation")
    assert external_id is not None
    return ChatRef(external_id, kind, _str(conversation, "title", "conversation", required=False))


def _party(payload: dict[str, Any]) -> Party:
    sender = _obj(payload.get("from"), "from")
    address = _str(sender, "id", "from")
    assert address is not None
    return Party(
        address=address,
        display_name=_str(sender, "name", "from", required=False),
        username=_str(sender, "username", "from", required=False),
        phone=_str(sender, "phone", "from", required=False),
    )


def _attachments(message: dict[str, Any]) -> tuple[Attachment, ...]:
    items = message.get("attachments") or []
    if not isinstance(items, list):
        raise InvalidInput("'message.attachments' must be a list")
    result = []
    for index, raw in enumerate(items):
        item = _obj(raw, f"message.attachments[{index}]")
        size = item.get("size")
        result.append(
            Attachment(
                kind=str(item.get("kind") or "document"),
                mime_type=item.get("mime_type"),
                size=size if isinstance(size, int) else None,
                file_name=item.get("file_name"),
                url=item.get("url"),
            )
        )
    return tuple(result)


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def parse(body: bytes) -> list[ProviderEvent]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from exc
    payload = _obj(payload, "body")
    kind = payload.get("type")
    if kind in ("message.received", "message"):
        message = _obj(payload.get("message"), "message")
        message_id = _str(message, "id", "message")
        assert message_id is not None
        return [
            ReceivedMessage(
                provider_message_id=message_id,
                chat=_chat(payload),
                sender=_party(payload),
                text=_str(message, "text", "message", required=False),
                attachments=_attachments(message),
                reply_to_provider_id=_str(message, "reply_to", "message", required=False),
                sent_at=_timestamp(message.get("timestamp")),
            )
        ]
    if kind == "message.edited":
        message = _obj(payload.get("message"), "message")
        message_id = _str(message, "id", "message")
        assert message_id is not None
        return [
            EditedMessage(
                provider_message_id=message_id,
                chat=_chat(payload),
                sender=_party(payload) if "from" in payload else None,
                text=_str(message, "text", "message", required=False),
                attachments=_attachments(message),
                edited_at=_timestamp(message.get("timestamp")),
            )
        ]
    if kind == "message.deleted":
        ids = payload.get("message_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str | int) for i in ids):
            raise InvalidInput("'message_ids' must be a non-empty list of ids")
        return [DeletedMessages(_chat(payload), tuple(str(i) for i in ids))]
    if kind == "message.status":
        status = _STATUSES.get(str(payload.get("status")))
        if status is None:
            raise InvalidInput("'status' must be sent, delivered, read or failed")
        message_id = _str(payload, "message_id", "body")
        assert message_id is not None
        raw_error = payload.get("error")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        return [
            StatusUpdate(
                provider_message_id=message_id,
                status=status,
                at=_timestamp(payload.get("timestamp")),
                error_code=str(error["code"]) if error.get("code") is not None else None,
                error_message=error.get("message"),
            )
        ]
    return [Ignored(f"event type {kind!r} is not handled")]
