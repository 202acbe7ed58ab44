"""Reading conversations, their messages, contacts, and raw events (with replay)."""

from __future__ import annotations

from chatgate.domain.clock import Clock
from chatgate.services.fanout import Publish
from chatgate.store.db import Database
from chatgate.store.models import Contact, Conversation, Message, RawEvent
from chatgate.store.pagination import Page
from chatgate.store.repositories.conversations import ConversationRepository
from chatgate.store.repositories.jobs import JobStore
from chatgate.store.repositories.raw_events import RawEventRepository
from chatgate.workers.queue import QueueItem


class ConversationQueries:
    def __init__(self, db: Database, publish: Publish, clock: Clock) -> None:
        self.db = db
        self.publish = publish
        self.clock = clock

    async def conversations(
        self, tenant_id: str, *, cursor: str | None, limit: int, integration_id: str | None, q: str | None
    ) -> Page[Conversation]:
        async with self.db.sessions() as session:
            return await ConversationRepository(session, tenant_id).list_conversations(
                cursor=cursor, limit=limit, integration_id=integration_id, q=q
            )

    async def conversation(self, tenant_id: str, conversation_id: str) -> Conversation:
        async with self.db.sessions() as session:
            return await ConversationRepository(session, tenant_id).get_conversation(conversation_id)

    async def messages(
        self,
        tenant_id: str,
        conversation_id: str,
        *,
        cursor: str | None,
        limit: int,
        q: str | None,
        direction: str | None,
        status: str | None,
    ) -> Page[Message]:
        async with self.db.sessions() as session:
            return await ConversationRepository(session, tenant_id).list_messages(
                conversation_id, cursor=cursor, limit=limit, q=q, direction=direction, status=status
            )

    async def contacts(
        self, tenant_id: str, *, cursor: str | None, limit: int, integration_id: str | None, q: str | None
    ) -> Page[Contact]:
        async with self.db.sessions() as session:
            return await ConversationRepository(session, tenant_id).list_contacts(
                cursor=cursor, limit=limit, integration_id=integration_id, q=q
            )

    async def contact(self, tenant_id: str, contact_id: str) -> Contact:
        async with self.db.sessions() as session:
            return await ConversationRepository(session, tenant_id).get_contact(contact_id)

    async def raw_events(
        self,
        tenant_id: str,
        *,
        cursor: str | None,
        limit: int,
        status: str | None,
        integration_id: str | None,
    ) -> Page[RawEvent]:
        async with self.db.sessions() as session:
            return await RawEventRepository(session, tenant_id).list(
                cursor=cursor, limit=limit, status=status, integration_id=integration_id
            )

    async def raw_event(self, tenant_id: str, raw_id: str) -> RawEvent:
        async with self.db.sessions() as session:
            return await RawEventRepository(session, tenant_id).get(raw_id)

    async def replay(self, tenant_id: str, raw_id: str) -> RawEvent:
        """Process a raw event again. Effects are idempotent, so only what is missing is added
        (a parse failure fixed by an upgrade, say); nothing is duplicated."""
        now = self.clock()
        async with self.db.transaction() as session:
            raw = await RawEventRepository(session, tenant_id).get(raw_id)
            raw.status = "pending"
            raw.error = None
            job_id = await JobStore(session).requeue_inbound(raw.id, tenant_id, now)
        await self.publish("inbound", [QueueItem(job_id, tenant_id)])
        return raw
