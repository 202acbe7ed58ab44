"""Build event payloads from stored rows (shared by inbound processing and sending)."""

from __future__ import annotations

from typing import Any

from chatgate.domain.events import (
    AttachmentData,
    ChannelData,
    ContactData,
    ConversationData,
    MessageData,
    MessageStatusData,
    ProviderIds,
    SenderData,
)
from chatgate.store.models import Channel, Contact, Conversation, Message


def message_data(
    message: Message,
    provider: str,
    conversation: Conversation,
    sender: str | None,
    contact: Contact | None = None,
) -> dict[str, Any]:
    return MessageData(
        id=message.id,
        integration_id=message.integration_id,
        provider=provider,
        conversation_id=message.conversation_id,
        contact_id=message.contact_id,
        direction=message.direction,
        status=message.status,
        text=message.text,
        attachments=[AttachmentData.model_validate(a) for a in message.attachments],
        reply_to_message_id=message.reply_to_message_id,
        provider_ids=ProviderIds(
            message_id=message.provider_message_id, chat_id=conversation.external_id, sender_id=sender
        ),
        sender=SenderData(
            address=contact.address, display_name=contact.display_name, username=contact.username
        )
        if contact is not None
        else None,
        sent_at=message.sent_at,
        created_at=message.created_at,
    ).model_dump(mode="json")


def status_data(message: Message, provider: str, previous: str) -> dict[str, Any]:
    return MessageStatusData(
        message_id=message.id,
        integration_id=message.integration_id,
        provider=provider,
        conversation_id=message.conversation_id,
        status=message.status,
        previous_status=previous,
        error_code=message.error_code,
        error_message=message.error_message,
        provider_message_id=message.provider_message_id,
    ).model_dump(mode="json")


def conversation_data(conversation: Conversation, provider: str) -> dict[str, Any]:
    return ConversationData(
        id=conversation.id,
        integration_id=conversation.integration_id,
        provider=provider,
        kind=conversation.kind,
        external_id=conversation.external_id,
        title=conversation.title,
        contact_id=conversation.contact_id,
    ).model_dump(mode="json")


def contact_data(contact: Contact, provider: str) -> dict[str, Any]:
    return ContactData(
        id=contact.id,
        integration_id=contact.integration_id,
        provider=provider,
        address=contact.address,
        display_name=contact.display_name,
        username=contact.username,
        phone=contact.phone,
        unreachable=contact.unreachable,
    ).model_dump(mode="json")


def channel_data(channel: Channel, provider: str) -> dict[str, Any]:
    return ChannelData(
        id=channel.id,
        integration_id=channel.integration_id,
        provider=provider,
        external_id=channel.external_id,
        kind=channel.kind,
        title=channel.title,
        username=channel.username,
        member_status=channel.member_status,
        can_post=channel.can_post,
        rights={k: bool(v) for k, v in channel.rights.items()},
        connected=channel.connected,
    ).model_dump(mode="json")
