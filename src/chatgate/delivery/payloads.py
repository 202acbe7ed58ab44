"""What a tenant endpoint receives: the standard envelope, or a seed-compatible format."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

from chatgate.domain.events import EventType

FORMATS = ("standard", "lovable")


class EventLike(Protocol):
    """The event fields a body is made of (an ORM `Event`, or a worker's lighter row)."""

    @property
    def event_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def integration_id(self) -> str | None: ...
    @property
    def conversation_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def data(self) -> dict[str, Any]: ...


def envelope(event: EventLike) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "type": event.type,
        "version": event.version,
        "tenant_id": event.tenant_id,
        "sequence": event.sequence,
        "integration_id": event.integration_id,
        "conversation_id": event.conversation_id,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": event.data,
    }


def lovable(event: EventLike, options: dict[str, Any]) -> dict[str, Any] | None:
    """The self-hosted Telegram CRM seed's inbound format; only received messages are sent."""
    if event.type != EventType.MESSAGE_RECEIVED or event.data.get("direction") != "inbound":
        return None
    ids = event.data.get("provider_ids") or {}
    sender_id = ids.get("sender_id")
    if isinstance(sender_id, str) and sender_id.lstrip("-").isdigit():
        sender_id = int(sender_id)  # the seed's CRM keys clients by Telegram's numeric user id
    return {
        "project_id": options.get("project_id"),
        "account_phone": options.get("account_phone"),
        "from_id": sender_id,
        "from_username": (event.data.get("sender") or {}).get("username"),
        "text": event.data.get("text"),
    }


def render(event: EventLike, format_name: str, options: dict[str, Any]) -> bytes | None:
    """The request body, or None when this format does not carry this event."""
    if format_name == "lovable":
        body = lovable(event, options)
        return None if body is None else json.dumps(body, ensure_ascii=False).encode()
    return json.dumps(envelope(event), separators=(",", ":"), ensure_ascii=False).encode()
