"""Direct provider calls outside the send queue: edit, delete, chat actions, button answers,
and on-demand media downloads. They are synchronous by nature (a user is waiting), so they
call the provider at once and map its answer to an HTTP error when it refuses."""

from __future__ import annotations

from typing import Any

from chatgate.domain.clock import Clock
from chatgate.domain.errors import InvalidInput, NotFound
from chatgate.domain.messages import Direction
from chatgate.providers.base import FetchedMedia, IntegrationContext, MediaFetcher, MessageActions
from chatgate.providers.registry import AdapterRegistry
from chatgate.services.provider_context import ProviderContexts
from chatgate.store.db import Database
from chatgate.store.models import Integration, Media, Message
from chatgate.store.repositories.conversations import ConversationRepository
from chatgate.store.repositories.integrations import IntegrationRepository


class ProviderActions:
    def __init__(
        self,
        db: Database,
        adapters: AdapterRegistry,
        contexts: ProviderContexts,
        clock: Clock,
        *,
        media_max_bytes: int,
    ) -> None:
        self.db = db
        self.adapters = adapters
        self.contexts = contexts
        self.clock = clock
        self.media_max_bytes = media_max_bytes

    async def _actions(
        self, integration: Integration, what: str
    ) -> tuple[MessageActions, IntegrationContext]:
        adapter = self.adapters.get(integration.kind)
        if not isinstance(adapter, MessageActions):
            raise InvalidInput(f"{integration.kind} integrations cannot {what}")
        return adapter, await self.contexts.for_integration(integration)

    async def _sent_message(self, tenant_id: str, message_id: str) -> tuple[Message, str, Integration]:
        async with self.db.sessions() as session:
            repo = ConversationRepository(session, tenant_id)
            message = await repo.get_message(message_id)
            conversation = await repo.get_conversation(message.conversation_id)
            integration = await IntegrationRepository(session, tenant_id).get(message.integration_id)
        if message.direction != Direction.OUTBOUND or not message.provider_message_id:
            raise InvalidInput("only messages we sent, and that reached the provider, can be changed")
        if message.deleted_at is not None:
            raise InvalidInput("this message was deleted")
        return message, conversation.external_id, integration

    async def edit_message(
        self, tenant_id: str, message_id: str, *, text: str | None, buttons: list[Any] | None
    ) -> Message:
        message, recipient, integration = await self._sent_message(tenant_id, message_id)
        adapter, ctx = await self._actions(integration, "edit messages")
        # A text edit replaces the whole message at Telegram: the buttons are kept unless replaced.
        keep = buttons if buttons is not None else list(message.buttons or [])
        await adapter.edit(recipient, str(message.provider_message_id), text, keep, ctx)
        async with self.db.transaction() as session:
            stored = await ConversationRepository(session, tenant_id).get_message(message_id)
            if text is not None:
                stored.text = text
            if buttons is not None:
                stored.buttons = buttons
            stored.edited_at = self.clock()
        return stored

    async def delete_message(self, tenant_id: str, message_id: str) -> Message:
        message, recipient, integration = await self._sent_message(tenant_id, message_id)
        adapter, ctx = await self._actions(integration, "delete messages")
        await adapter.delete(recipient, str(message.provider_message_id), ctx)
        async with self.db.transaction() as session:
            stored = await ConversationRepository(session, tenant_id).get_message(message_id)
            stored.deleted_at = self.clock()
        return stored

    async def chat_action(self, tenant_id: str, conversation_id: str, action: str) -> None:
        async with self.db.sessions() as session:
            conversation = await ConversationRepository(session, tenant_id).get_conversation(conversation_id)
            integration = await IntegrationRepository(session, tenant_id).get(conversation.integration_id)
        adapter, ctx = await self._actions(integration, "show chat actions")
        await adapter.chat_action(conversation.external_id, action, ctx)

    async def answer_button(
        self, tenant_id: str, integration_id: str, callback_id: str, text: str | None, show_alert: bool
    ) -> None:
        async with self.db.sessions() as session:
            integration = await IntegrationRepository(session, tenant_id).get(integration_id)
        adapter, ctx = await self._actions(integration, "answer button presses")
        await adapter.answer_button(callback_id, text, show_alert, ctx)

    async def fetch_media(self, tenant_id: str, media: Media) -> FetchedMedia:
        """A received attachment's bytes, fetched from the provider now (nothing is cached)."""
        if not media.provider_file_id or not media.integration_id:
            raise NotFound("this file has no provider copy to fetch")
        async with self.db.sessions() as session:
            integration = await IntegrationRepository(session, tenant_id).get(media.integration_id)
        adapter = self.adapters.get(integration.kind)
        if not isinstance(adapter, MediaFetcher):
            raise NotFound(f"{integration.kind} files cannot be fetched through this API")
        ctx = await self.contexts.for_integration(integration)
        fetched = await adapter.fetch_media(media.provider_file_id, ctx, max_bytes=self.media_max_bytes)
        return FetchedMedia(
            fetched.content, media.mime_type or fetched.mime_type, media.file_name or fetched.file_name
        )

    async def mark_read(self, tenant_id: str, message_id: str) -> Message:
        """Tell the provider we read a received message (WhatsApp's blue ticks)."""
        async with self.db.sessions() as session:
            message = await ConversationRepository(session, tenant_id).get_message(message_id)
            integration = await IntegrationRepository(session, tenant_id).get(message.integration_id)
        if message.direction != Direction.INBOUND or not message.provider_message_id:
            raise InvalidInput("only received messages can be marked as read")
        adapter = self.adapters.get(integration.kind)
        mark = getattr(adapter, "mark_read", None)
        if mark is None:
            raise InvalidInput(f"{integration.kind} integrations cannot mark messages as read")
        await mark(message.provider_message_id, await self.contexts.for_integration(integration))
        return message
