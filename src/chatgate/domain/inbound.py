"""What a provider adapter turns a raw webhook into: provider-neutral, pure data.

`parse_inbound` returns a list of these; the inbound processor stores them and emits events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chatgate.domain.messages import ConversationKind, MessageStatus


@dataclass(frozen=True)
class Party:
    """Someone who writes: identified by their address at the provider (user id, phone…)."""

    address: str
    display_name: str | None = None
    username: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class ChatRef:
    external_id: str
    kind: ConversationKind = ConversationKind.PRIVATE
    title: str | None = None


@dataclass(frozen=True)
class Attachment:
    kind: str  # image, video, audio, voice, document, sticker, location, contact, other
    mime_type: str | None = None
    size: int | None = None
    file_name: str | None = None
    provider_file_id: str | None = None
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedMessage:
    provider_message_id: str
    chat: ChatRef
    sender: Party
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()
    reply_to_provider_id: str | None = None
    sent_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EditedMessage:
    provider_message_id: str
    chat: ChatRef
    sender: Party | None = None
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()
    edited_at: datetime | None = None


@dataclass(frozen=True)
class DeletedMessages:
    chat: ChatRef
    provider_message_ids: tuple[str, ...]


@dataclass(frozen=True)
class StatusUpdate:
    """A provider's report on one of our outbound messages."""

    provider_message_id: str
    status: MessageStatus
    at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class ButtonPressed:
    """A user pressed one of our inline buttons (Telegram callback query, WhatsApp button reply
    arrives as a message instead)."""

    callback_id: str
    sender: Party
    data: str | None
    chat: ChatRef | None = None
    provider_message_id: str | None = None  # the message carrying the button, when still accessible


@dataclass(frozen=True)
class Reaction:
    """Someone reacted to a message (an empty emoji removes the reaction)."""

    chat: ChatRef
    sender: Party
    provider_message_id: str
    emoji: str
    at: datetime | None = None


@dataclass(frozen=True)
class ChatMembership:
    """The integration itself was added to, removed from or promoted in a group or channel."""

    chat: ChatRef
    status: str  # creator, administrator, member, restricted, left, kicked
    username: str | None = None
    rights: dict[str, bool] = field(default_factory=dict)
    by: Party | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Ignored:
    """An update we deliberately do not turn into anything (kept on the raw event, with why)."""

    reason: str


ProviderEvent = (
    ReceivedMessage
    | EditedMessage
    | DeletedMessages
    | StatusUpdate
    | ButtonPressed
    | Reaction
    | ChatMembership
    | Ignored
)
