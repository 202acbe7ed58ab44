"""The normalized events every consumer sees (webhooks, live stream, pull API), version 1.

The payload models here are the contract: their JSON Schemas are published in docs/events/
and a test keeps those files in step with these models.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EVENT_VERSION = 1


class EventType(StrEnum):
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_EDITED = "message.edited"
    MESSAGE_DELETED = "message.deleted"
    MESSAGE_STATUS = "message.status"
    CONVERSATION_CREATED = "conversation.created"
    CONTACT_UPDATED = "contact.updated"
    INTEGRATION_STATUS_CHANGED = "integration.status_changed"
    ENDPOINT_DISABLED = "endpoint.disabled"
    BUTTON_PRESSED = "button.pressed"
    MESSAGE_REACTION = "message.reaction"
    CHANNEL_UPDATED = "channel.updated"
    ACCOUNT_LOGIN = "account.login"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttachmentData(_Payload):
    kind: str = Field(description="image, video, audio, voice, document, sticker, location, contact, other")
    mime_type: str | None = None
    size: int | None = Field(None, description="Bytes, when the provider says")
    file_name: str | None = None
    media_id: str | None = Field(None, description="Fetch the bytes at /v1/media/{media_id}")
    url: str | None = Field(None, description="Link to the bytes: /v1/media/{media_id}, or the sender's URL")
    extra: dict[str, Any] = Field(default_factory=dict, description="Kind-specific: coordinates, vCard…")


class ProviderIds(_Payload):
    message_id: str | None = None
    chat_id: str | None = None
    sender_id: str | None = None


class SenderData(_Payload):
    address: str = Field(description="The sender's id at the provider (user id, phone number…)")
    display_name: str | None = None
    username: str | None = None


class MessageData(_Payload):
    id: str
    integration_id: str
    provider: str
    conversation_id: str
    contact_id: str | None
    direction: str = Field(description="inbound or outbound")
    status: str
    text: str | None
    attachments: list[AttachmentData]
    reply_to_message_id: str | None = Field(description="Our id of the message this replies to")
    provider_ids: ProviderIds
    sender: SenderData | None = Field(None, description="Who wrote it (inbound messages)")
    sent_at: datetime | None
    created_at: datetime


class MessageDeletedData(_Payload):
    integration_id: str
    provider: str
    conversation_id: str
    message_ids: list[str]
    provider_message_ids: list[str]


class MessageStatusData(_Payload):
    message_id: str
    integration_id: str
    provider: str
    conversation_id: str
    status: str = Field(description="sent, delivered, read or failed; only ever moves forward")
    previous_status: str
    error_code: str | None = None
    error_message: str | None = None
    provider_message_id: str | None = None


class ConversationData(_Payload):
    id: str
    integration_id: str
    provider: str
    kind: str = Field(description="private, group or channel")
    external_id: str
    title: str | None
    contact_id: str | None


class ContactData(_Payload):
    id: str
    integration_id: str
    provider: str
    address: str
    display_name: str | None
    username: str | None
    phone: str | None
    unreachable: bool


class IntegrationStatusData(_Payload):
    integration_id: str
    provider: str
    status: str
    previous_status: str
    reason: str | None


class EndpointDisabledData(_Payload):
    endpoint_id: str
    url: str
    reason: str


class ButtonPressedData(_Payload):
    integration_id: str
    provider: str
    callback_id: str = Field(description="Answer it with POST /v1/integrations/{id}/button-answers")
    data: str | None = Field(description="The button's callback_data")
    sender: SenderData
    conversation_id: str | None = Field(description="Where the button's message is, when known")
    message_id: str | None = Field(description="Our id of the message carrying the button, when known")
    provider_message_id: str | None


class ReactionData(_Payload):
    integration_id: str
    provider: str
    conversation_id: str
    message_id: str | None = Field(description="Our id of the message reacted to, when we have it")
    provider_message_id: str
    emoji: str = Field(description="The reaction; empty when it was removed")
    sender: SenderData


class ChannelData(_Payload):
    id: str
    integration_id: str
    provider: str
    external_id: str
    kind: str = Field(description="channel or group")
    title: str | None
    username: str | None
    member_status: str = Field(description="Our membership: creator, administrator, member, left, kicked…")
    can_post: bool
    rights: dict[str, bool]
    connected: bool


class AccountLoginData(_Payload):
    integration_id: str
    provider: str
    state: str = Field(
        description="code_sent, password_needed, qr_pending, active, failed (each step of a login)"
    )
    phone: str | None = None
    code_type: str | None = Field(None, description="How Telegram sent the code: app, sms, call…")
    next_type: str | None = Field(None, description="How a resend would deliver it")
    timeout: int | None = Field(None, description="Seconds before a resend is allowed")
    password_hint: str | None = None
    qr_url: str | None = Field(None, description="tg://login?token=… to show as a QR code")
    qr_expires_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None


PAYLOADS: dict[EventType, type[BaseModel]] = {
    EventType.MESSAGE_RECEIVED: MessageData,
    EventType.MESSAGE_EDITED: MessageData,
    EventType.MESSAGE_DELETED: MessageDeletedData,
    EventType.MESSAGE_STATUS: MessageStatusData,
    EventType.CONVERSATION_CREATED: ConversationData,
    EventType.CONTACT_UPDATED: ContactData,
    EventType.INTEGRATION_STATUS_CHANGED: IntegrationStatusData,
    EventType.ENDPOINT_DISABLED: EndpointDisabledData,
    EventType.BUTTON_PRESSED: ButtonPressedData,
    EventType.MESSAGE_REACTION: ReactionData,
    EventType.CHANNEL_UPDATED: ChannelData,
    EventType.ACCOUNT_LOGIN: AccountLoginData,
}


class EventEnvelope(BaseModel):
    """How every event is delivered."""

    id: str = Field(description="Stable event id (evt_…); use it to deduplicate")
    type: EventType
    version: int = EVENT_VERSION
    tenant_id: str
    sequence: int = Field(description="Monotonic per tenant; resume streams and pulls from it")
    integration_id: str | None
    conversation_id: str | None
    created_at: datetime
    data: dict[str, Any]
