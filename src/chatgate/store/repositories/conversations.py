"""Contacts, conversations and messages of one tenant."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.ids import new_id
from chatgate.domain.inbound import ChatRef, Party
from chatgate.domain.messages import Direction
from chatgate.store.insert_unless_present import insert_unless_present
from chatgate.store.models import Contact, Conversation, Message
from chatgate.store.pagination import Page
from chatgate.store.prepared import Prepared
from chatgate.store.repositories.base import TenantScoped
from chatgate.store.repositories.inbound_lookups import InboundLookups
from chatgate.store.transient import adopted, table_columns, transient
from chatgate.store.unindexed import unindexed

_MESSAGES = cast(Table, Message.__table__)
_MESSAGE_COLUMNS = tuple(column.key for column in _MESSAGES.columns)
# What the model's column defaults would give; a staged message gets every column.
_MESSAGE_DEFAULTS: dict[str, Any] = dict.fromkeys(_MESSAGE_COLUMNS) | {"attachments": [], "buttons": []}
_INSERT_MESSAGES = Prepared(_MESSAGES.insert())


R = TypeVar("R", Contact, Conversation)
_CONVERSATIONS = cast(Table, Conversation.__table__)
# A new contact or conversation goes in through Core (built once), not the ORM's flush: the
# unit of work cost more than the rest of a first message's processing.
_INSERTS = {
    Contact: Prepared(cast(Table, Contact.__table__).insert()),
    Conversation: Prepared(_CONVERSATIONS.insert()),
}


# No savepoint for the first message of a new chat: on PostgreSQL each SAVEPOINT and RELEASE,
# named by SQLAlchemy's counter, was a new statement text for asyncpg to prepare. Not on MariaDB:
# its IGNORE would hide other errors; it keeps the savepoint.
_INSERTS_UNLESS_TAKEN = {
    dialect: {
        Contact: Prepared(insert_unless_present(cast(Table, Contact.__table__), dialect)),
        Conversation: Prepared(insert_unless_present(_CONVERSATIONS, dialect)),
    }
    for dialect in ("postgresql", "sqlite")
}
# Built once. The tenant is checked but kept from the planner: with a plain `tenant_id = ?`
# SQLite (no statistics) searched the tenant's index instead of the ids' primary key.
_TOUCH = Prepared(
    _CONVERSATIONS.update()
    .where(
        unindexed(_CONVERSATIONS.c.tenant_id) == bindparam("b_tenant"),
        _CONVERSATIONS.c.id.in_(bindparam("b_ids", expanding=True)),
        or_(
            _CONVERSATIONS.c.last_message_at.is_(None),
            _CONVERSATIONS.c.last_message_at < bindparam("b_at"),
        ),
    )
    .values(last_message_at=bindparam("b_at"))
)


class ConversationRepository(TenantScoped):
    def __init__(self, session: AsyncSession, tenant_id: str, lookups: InboundLookups | None = None) -> None:
        super().__init__(session, tenant_id)
        self.lookups = lookups  # an inbound batch's rows read up front (inbound_lookups.py)
        self._staged: list[Message] = []

    # --- contacts -------------------------------------------------------------------------------

    async def upsert_contact(self, integration_id: str, party: Party, now: datetime) -> tuple[Contact, bool]:
        """Returns (contact, changed): changed when created or when its details moved."""
        contact = await self._contact_by_address(integration_id, party.address)
        if contact is None:
            contact = transient(
                Contact,
                {
                    "id": new_id("ctc"),
                    "tenant_id": self.tenant_id,
                    "integration_id": integration_id,
                    "address": party.address,
                    "display_name": party.display_name,
                    "username": party.username,
                    "phone": party.phone,
                    "unreachable": False,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            created = await self._insert_or_get(
                contact, lambda: self._query_contact(integration_id, party.address)
            )
            if self.lookups is not None:
                self.lookups.contacts[(integration_id, party.address)] = created
            return created, created is contact
        changes = {
            field: value
            for field in ("display_name", "username", "phone")
            if (value := getattr(party, field)) is not None and value != getattr(contact, field)
        }
        if not changes:
            return contact, False
        contact = self._adopt(
            self.lookups.contacts if self.lookups else None, (integration_id, party.address), contact
        )
        for field, value in changes.items():
            setattr(contact, field, value)
        contact.updated_at = now
        return contact, True

    def _adopt(self, cache: dict[Any, Any] | None, key: Any, row: R) -> R:
        """The session's object for a row from the batch's lookups (plain until changed), so
        the change is saved with the session; the lookups hand it out from then on."""
        owned = adopted(self.session, row)
        if cache is not None:
            cache[key] = owned
        return owned

    async def _contact_by_address(self, integration_id: str, address: str) -> Contact | None:
        if self.lookups is not None and (integration_id, address) in self.lookups.contacts:
            return self.lookups.contacts[(integration_id, address)]
        return await self._query_contact(integration_id, address)

    async def _query_contact(self, integration_id: str, address: str) -> Contact | None:
        query = self._select(Contact).where(
            Contact.integration_id == integration_id, Contact.address == address
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get_contact(self, contact_id: str) -> Contact:
        return await self._get(Contact, contact_id, "contact")

    async def list_contacts(
        self, *, cursor: str | None, limit: int, integration_id: str | None, q: str | None
    ) -> Page[Contact]:
        query = self._select(Contact)
        if integration_id:
            query = query.where(Contact.integration_id == integration_id)
        if q:
            like = f"%{q}%"
            query = query.where(
                or_(Contact.display_name.like(like), Contact.username.like(like), Contact.address.like(like))
            )
        return await self._page(query, Contact, cursor, limit)

    async def mark_unreachable(self, contact_id: str, unreachable: bool, now: datetime) -> None:
        await self.session.execute(
            update(Contact)
            .where(Contact.tenant_id == self.tenant_id, Contact.id == contact_id)
            .values(unreachable=unreachable, updated_at=now)
        )

    # --- conversations --------------------------------------------------------------------------

    async def upsert_conversation(
        self, integration_id: str, chat: ChatRef, contact_id: str | None, now: datetime
    ) -> tuple[Conversation, bool]:
        conversation = await self.conversation_by_external(integration_id, chat.external_id)
        if conversation is None:
            conversation = transient(
                Conversation,
                {
                    "id": new_id("cnv"),
                    "tenant_id": self.tenant_id,
                    "integration_id": integration_id,
                    "external_id": chat.external_id,
                    "kind": chat.kind.value,
                    "title": chat.title,
                    "contact_id": contact_id,
                    "last_message_at": None,
                    "created_at": now,
                },
            )
            stored = await self._insert_or_get(
                conversation, lambda: self._query_conversation(integration_id, chat.external_id)
            )
            if self.lookups is not None:
                self.lookups.conversations[(integration_id, chat.external_id)] = stored
            return stored, stored is conversation
        if chat.title and chat.title != conversation.title:
            conversation = self._adopt(
                self.lookups.conversations if self.lookups else None,
                (integration_id, chat.external_id),
                conversation,
            )
            conversation.title = chat.title
        return conversation, False

    async def conversation_by_external(self, integration_id: str, external_id: str) -> Conversation | None:
        if self.lookups is not None and (integration_id, external_id) in self.lookups.conversations:
            return self.lookups.conversations[(integration_id, external_id)]
        return await self._query_conversation(integration_id, external_id)

    async def _query_conversation(self, integration_id: str, external_id: str) -> Conversation | None:
        query = self._select(Conversation).where(
            Conversation.integration_id == integration_id, Conversation.external_id == external_id
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def move_conversation(self, conversation_id: str, external_id: str) -> None:
        """The provider moved the chat to a new id (Telegram group → supergroup)."""
        conversation = await self.get_conversation(conversation_id)
        if await self.conversation_by_external(conversation.integration_id, external_id) is None:
            conversation.external_id = external_id

    async def get_conversation(self, conversation_id: str) -> Conversation:
        return await self._get(Conversation, conversation_id, "conversation")

    async def list_conversations(
        self, *, cursor: str | None, limit: int, integration_id: str | None, q: str | None
    ) -> Page[Conversation]:
        query = self._select(Conversation)
        if integration_id:
            query = query.where(Conversation.integration_id == integration_id)
        if q:
            query = query.where(or_(Conversation.title.like(f"%{q}%"), Conversation.external_id == q))
        return await self._page(query, Conversation, cursor, limit)

    # --- messages -------------------------------------------------------------------------------

    async def message_by_provider_id(
        self, integration_id: str, direction: str, provider_message_id: str
    ) -> Message | None:
        known = self.lookups.messages.get((integration_id, provider_message_id)) if self.lookups else None
        if known is not None:
            return next((m for m in known if m.direction == direction), None)
        query = self._select(Message).where(
            Message.integration_id == integration_id,
            Message.direction == direction,
            Message.provider_message_id == provider_message_id,
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def messages_by_provider_ids(self, integration_id: str, provider_ids: list[str]) -> list[Message]:
        if not provider_ids:
            return []
        if self.lookups is not None and all(
            (integration_id, p) in self.lookups.messages for p in provider_ids
        ):
            return [m for p in provider_ids for m in self.lookups.messages[(integration_id, p)]]
        # The tenant is checked on the rows (see inbound_lookups.py: in SQL it made SQLite walk
        # the tenant's message index instead of the unique one).
        query = select(Message).where(
            Message.integration_id == integration_id,
            Message.direction.in_([d.value for d in Direction]),
            Message.provider_message_id.in_(provider_ids),
        )
        return [m for m in (await self.session.execute(query)).scalars() if m.tenant_id == self.tenant_id]

    async def last_inbound_at(self, conversation_id: str) -> datetime | None:
        """When the customer last wrote: the provider's timestamp when it gave one (a webhook
        delivered late must not reopen WhatsApp's 24-hour window), else when we stored it."""
        value: datetime | None = await self.session.scalar(
            select(func.max(func.coalesce(Message.sent_at, Message.created_at))).where(
                Message.tenant_id == self.tenant_id,
                Message.conversation_id == conversation_id,
                Message.direction == Direction.INBOUND.value,
            )
        )
        return value

    async def add_message(self, message: Message) -> Message:
        self.session.add(message)
        await self.session.flush()
        return message

    def stage_message(self, values: dict[str, Any]) -> Message:
        """A new message held for `insert_staged` (an inbound batch's messages go in as one
        INSERT); this batch's lookups see it at once, and changes made to it before the insert
        (an edit or deletion later in the batch) are inserted with it."""
        message = transient(Message, {**_MESSAGE_DEFAULTS, **values})
        self._staged.append(message)
        key = (message.integration_id, message.provider_message_id or "")
        if self.lookups is not None and key in self.lookups.messages:
            self.lookups.messages[key].append(message)
        return message

    async def insert_staged(self) -> None:
        staged, self._staged = self._staged, []
        if staged:
            await _INSERT_MESSAGES.run_many(
                self.session, [{key: m.__dict__[key] for key in _MESSAGE_COLUMNS} for m in staged]
            )

    async def get_message(self, message_id: str) -> Message:
        return await self._get(Message, message_id, "message")

    async def list_messages(
        self,
        conversation_id: str,
        *,
        cursor: str | None,
        limit: int,
        q: str | None,
        direction: str | None,
        status: str | None,
    ) -> Page[Message]:
        await self.get_conversation(conversation_id)  # 404 for another tenant's conversation
        query = self._select(Message).where(Message.conversation_id == conversation_id)
        if q:
            query = query.where(Message.text.like(f"%{q}%"))
        if direction:
            query = query.where(Message.direction == direction)
        if status:
            query = query.where(Message.status == status)
        return await self._page(query, Message, cursor, limit)

    async def touch_conversations(self, conversation_ids: Iterable[str], at: datetime) -> None:
        """Move their last message time forward to `at` (never back), in one statement."""
        ids = sorted(set(conversation_ids))
        if not ids:
            return
        await _TOUCH.run(self.session, {"b_tenant": self.tenant_id, "b_ids": ids, "b_at": at})

    async def _insert_or_get(self, row: R, reload: Callable[[], Awaitable[R | None]]) -> R:
        """Insert a `transient` row; if a concurrent writer won the unique key, use theirs. The
        row stays out of the session (a change to it later is `_adopt`ed)."""
        values = {key: row.__dict__[key] for key in table_columns(type(row))}
        unless_taken = _INSERTS_UNLESS_TAKEN.get(self.session.get_bind().dialect.name)
        if unless_taken is not None:
            if await unless_taken[type(row)].run(self.session, values):
                return row
            existing = await reload()
            if existing is not None:
                return existing
            # Skipped, yet nothing to read: let the plain insert below raise what it meets.
        try:
            async with self.session.begin_nested():
                await _INSERTS[type(row)].run(self.session, values)
        except (IntegrityError, sqlite3.IntegrityError):  # the latter: SQLite's inline engine
            existing = await reload()
            if existing is None:
                raise
            return existing
        return row
