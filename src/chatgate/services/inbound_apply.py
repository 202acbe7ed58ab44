"""Apply provider-neutral events to the store, inside the caller's transaction.

Every effect is idempotent: a message already stored for (integration, provider id) is not
stored again, statuses only move forward, and each produced event carries a dedupe key
derived from its cause, so replaying a raw event changes nothing twice.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from chatgate.domain.channels import can_post, channel_kind
from chatgate.domain.events import ButtonPressedData, EventType, MessageDeletedData, ReactionData, SenderData
from chatgate.domain.ids import new_id
from chatgate.domain.inbound import (
    Attachment,
    ButtonPressed,
    ChatMembership,
    DeletedMessages,
    EditedMessage,
    Ignored,
    Party,
    ProviderEvent,
    Reaction,
    ReceivedMessage,
    StatusUpdate,
)
from chatgate.domain.messages import Direction, MessageStatus, moves_forward
from chatgate.services.event_data import (
    channel_data,
    contact_data,
    conversation_data,
    message_data,
    status_data,
)
from chatgate.store.models import Media, Message
from chatgate.store.repositories.channels import ChannelRepository
from chatgate.store.repositories.conversations import ConversationRepository
from chatgate.store.repositories.events import NewEvent


class StatusTooEarly(Exception):
    """A status report for an outbound message we do not know (yet)."""

    def __init__(self, provider_message_id: str) -> None:
        super().__init__(f"no outbound message with provider id {provider_message_id} (yet)")
        self.provider_message_id = provider_message_id


class InboundApplier:
    """Applies one raw event's provider events. Within a batch the repository (with the batch's
    lookups) and the set of conversations to touch are shared: the processor moves every
    touched conversation's last message time in one statement at the end."""

    def __init__(
        self,
        session: AsyncSession,
        tenant_id: str,
        integration_id: str,
        provider: str,
        now: datetime,
        *,
        repo: ConversationRepository | None = None,
        touched: set[str] | None = None,
    ) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.integration_id = integration_id
        self.provider = provider
        self.now = now
        self.repo = repo or ConversationRepository(session, tenant_id)
        self.touched = touched if touched is not None else set()
        self.received = 0

    async def apply(self, event: ProviderEvent, cause: str) -> list[NewEvent]:
        if isinstance(event, ReceivedMessage):
            return await self._received(event, cause)
        if isinstance(event, EditedMessage):
            return await self._edited(event, cause)
        if isinstance(event, DeletedMessages):
            return await self._deleted(event, cause)
        if isinstance(event, StatusUpdate):
            return await self.status(event)
        if isinstance(event, ButtonPressed):
            return await self._button(event, cause)
        if isinstance(event, Reaction):
            return await self._reaction(event, cause)
        if isinstance(event, ChatMembership):
            return await self._membership(event, cause)
        if isinstance(event, Ignored):
            return []
        raise TypeError(f"unknown provider event {type(event).__name__}")

    def _new(self, type_: EventType, data: dict[str, Any], conversation_id: str | None, key: str) -> NewEvent:
        return NewEvent(type_, data, self.integration_id, conversation_id, key)

    async def _received(self, event: ReceivedMessage, cause: str) -> list[NewEvent]:
        out: list[NewEvent] = []
        contact, contact_changed = await self.repo.upsert_contact(self.integration_id, event.sender, self.now)
        if contact_changed:
            out.append(
                self._new(
                    EventType.CONTACT_UPDATED, contact_data(contact, self.provider), None, f"{cause}:contact"
                )
            )
        private_contact = contact.id if event.chat.kind.value == "private" else None
        conversation, created = await self.repo.upsert_conversation(
            self.integration_id, event.chat, private_contact, self.now
        )
        if created:
            out.append(
                self._new(
                    EventType.CONVERSATION_CREATED,
                    conversation_data(conversation, self.provider),
                    conversation.id,
                    f"{cause}:conversation",
                )
            )
        existing = await self.repo.message_by_provider_id(
            self.integration_id, Direction.INBOUND, event.provider_message_id
        )
        if existing is not None:
            return out  # a provider re-delivery under a new event id: the message is already here
        reply_to = None
        if event.reply_to_provider_id:
            targets = await self.repo.messages_by_provider_ids(
                self.integration_id, [event.reply_to_provider_id]
            )
            reply_to = targets[0].id if targets else None
        message = self.repo.stage_message(
            {
                "id": new_id("msg"),
                "tenant_id": self.tenant_id,
                "integration_id": self.integration_id,
                "conversation_id": conversation.id,
                "contact_id": contact.id,
                "direction": Direction.INBOUND.value,
                "status": MessageStatus.RECEIVED.value,
                "provider_message_id": event.provider_message_id,
                "text": event.text,
                "attachments": [await self._attachment(a) for a in event.attachments],
                "reply_to_message_id": reply_to,
                "reply_to_provider_id": event.reply_to_provider_id,
                "sent_at": event.sent_at,
                "created_at": self.now,
                "updated_at": self.now,
            }
        )
        self.touched.add(conversation.id)
        self.received += 1
        out.append(
            self._new(
                EventType.MESSAGE_RECEIVED,
                message_data(message, self.provider, conversation, contact.address, contact),
                conversation.id,
                f"{cause}:message",
            )
        )
        return out

    @staticmethod
    def _sender(party: Party) -> SenderData:
        return SenderData(address=party.address, display_name=party.display_name, username=party.username)

    async def _button(self, event: ButtonPressed, cause: str) -> list[NewEvent]:
        conversation_id = message_id = None
        if event.chat is not None:
            conversation = await self.repo.conversation_by_external(
                self.integration_id, event.chat.external_id
            )
            conversation_id = conversation.id if conversation else None
        if event.provider_message_id:
            found = await self.repo.messages_by_provider_ids(self.integration_id, [event.provider_message_id])
            message_id = found[0].id if found else None
        data = ButtonPressedData(
            integration_id=self.integration_id,
            provider=self.provider,
            callback_id=event.callback_id,
            data=event.data,
            sender=self._sender(event.sender),
            conversation_id=conversation_id,
            message_id=message_id,
            provider_message_id=event.provider_message_id,
        ).model_dump(mode="json")
        return [self._new(EventType.BUTTON_PRESSED, data, conversation_id, f"{cause}:button")]

    async def _reaction(self, event: Reaction, cause: str) -> list[NewEvent]:
        conversation, created = await self.repo.upsert_conversation(
            self.integration_id, event.chat, None, self.now
        )
        out: list[NewEvent] = []
        if created:
            out.append(
                self._new(
                    EventType.CONVERSATION_CREATED,
                    conversation_data(conversation, self.provider),
                    conversation.id,
                    f"{cause}:conversation",
                )
            )
        found = await self.repo.messages_by_provider_ids(self.integration_id, [event.provider_message_id])
        data = ReactionData(
            integration_id=self.integration_id,
            provider=self.provider,
            conversation_id=conversation.id,
            message_id=found[0].id if found else None,
            provider_message_id=event.provider_message_id,
            emoji=event.emoji,
            sender=self._sender(event.sender),
        ).model_dump(mode="json")
        out.append(self._new(EventType.MESSAGE_REACTION, data, conversation.id, f"{cause}:reaction"))
        return out

    async def _membership(self, event: ChatMembership, cause: str) -> list[NewEvent]:
        channel, changed = await ChannelRepository(self.session, self.tenant_id).upsert(
            self.integration_id,
            event.chat.external_id,
            self.now,
            kind=channel_kind(event.chat.kind),
            title=event.chat.title,
            username=event.username,
            member_status=event.status,
            rights=dict(event.rights),
            can_post=can_post(event.chat.kind, event.status, event.rights),
        )
        if not changed:
            return []
        return [
            self._new(
                EventType.CHANNEL_UPDATED, channel_data(channel, self.provider), None, f"{cause}:channel"
            )
        ]

    async def _attachment(self, attachment: Attachment) -> dict[str, Any]:
        data: dict[str, Any] = {k: v for k, v in asdict(attachment).items() if k != "provider_file_id"}
        if attachment.provider_file_id or attachment.url:
            media = Media(
                id=new_id("med"),
                tenant_id=self.tenant_id,
                integration_id=self.integration_id,
                mime_type=attachment.mime_type,
                file_name=attachment.file_name,
                size=attachment.size,
                provider_file_id=attachment.provider_file_id,
                source_url=attachment.url,
                created_at=self.now,
            )
            self.session.add(media)
            data["media_id"] = media.id
            data["url"] = f"/v1/media/{media.id}"
        return data

    async def _edited(self, event: EditedMessage, cause: str) -> list[NewEvent]:
        message = await self.repo.message_by_provider_id(
            self.integration_id, Direction.INBOUND, event.provider_message_id
        )
        if message is None:
            return []
        message.text = event.text
        if event.attachments:
            message.attachments = [await self._attachment(a) for a in event.attachments]
        message.edited_at = event.edited_at or self.now
        conversation = await self.repo.get_conversation(message.conversation_id)
        sender = event.sender.address if event.sender else None
        return [
            self._new(
                EventType.MESSAGE_EDITED,
                message_data(message, self.provider, conversation, sender),
                conversation.id,
                f"{cause}:edited",
            )
        ]

    async def _deleted(self, event: DeletedMessages, cause: str) -> list[NewEvent]:
        messages = await self.repo.messages_by_provider_ids(
            self.integration_id, list(event.provider_message_ids)
        )
        if not messages:
            return []
        for message in messages:
            message.deleted_at = self.now
        conversation_id = messages[0].conversation_id
        data = MessageDeletedData(
            integration_id=self.integration_id,
            provider=self.provider,
            conversation_id=conversation_id,
            message_ids=[m.id for m in messages],
            provider_message_ids=[m.provider_message_id or "" for m in messages],
        ).model_dump(mode="json")
        return [self._new(EventType.MESSAGE_DELETED, data, conversation_id, f"{cause}:deleted")]

    async def status(self, event: StatusUpdate) -> list[NewEvent]:
        message = await self.repo.message_by_provider_id(
            self.integration_id, Direction.OUTBOUND, event.provider_message_id
        )
        if message is None:
            # A provider can report on a message before our send committed its id: retry later.
            raise StatusTooEarly(event.provider_message_id)
        return await apply_status(
            self.session,
            message,
            event.status,
            self.now,
            event.error_code,
            event.error_message,
            self.provider,
        )


async def apply_status(
    session: AsyncSession,
    message: Message,
    status: MessageStatus,
    now: datetime,
    error_code: str | None,
    error_message: str | None,
    provider: str,
) -> list[NewEvent]:
    """Move an outbound message's status forward (never back) and describe the change.

    Compare-and-set on the current status: two reports processed at once (a `read` racing a
    `delivered`) cannot overwrite each other; the loser re-reads and decides again.
    """
    for _ in range(5):
        previous = MessageStatus(message.status)
        if not moves_forward(previous, status):
            return []
        stamp = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at", "failed": "failed_at"}[
            status.value
        ]
        values: dict[str, Any] = {"status": status.value, stamp: now, "updated_at": now}
        if status == MessageStatus.FAILED:
            values.update(error_code=error_code, error_message=error_message)
        if message.provider_message_id is not None:
            values["provider_message_id"] = message.provider_message_id
        result = await session.execute(
            update(Message).where(Message.id == message.id, Message.status == previous.value).values(**values)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            for key, value in values.items():
                set_committed_value(message, key, value)
            return [
                NewEvent(
                    EventType.MESSAGE_STATUS,
                    status_data(message, provider, previous.value),
                    message.integration_id,
                    message.conversation_id,
                    f"status:{message.id}:{status.value}",
                )
            ]
        await session.refresh(message)
    raise RuntimeError(f"message {message.id} status kept changing under us")
