"""What a batch of inbound events will look up, read up front: a few queries per batch
instead of a contact, a conversation and a message query per event.

A key that was looked up and not found is recorded as absent, so the repository answers it
from here too; rows the batch creates are added as it goes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.inbound import (
    ButtonPressed,
    DeletedMessages,
    EditedMessage,
    ProviderEvent,
    Reaction,
    ReceivedMessage,
    StatusUpdate,
)
from chatgate.domain.messages import Direction
from chatgate.store.models import Contact, Conversation, Message
from chatgate.store.prepared import Prepared
from chatgate.store.transient import from_rows, persistent
from chatgate.store.unindexed import unindexed

Key = tuple[str, str]
Row = TypeVar(
    "Row", Contact, Conversation
)  # (integration id, address / external chat id / provider message id)


@dataclass
class InboundLookups:
    contacts: dict[Key, Contact | None] = field(default_factory=dict)
    conversations: dict[Key, Conversation | None] = field(default_factory=dict)
    messages: dict[Key, list[Message]] = field(default_factory=dict)  # every direction


@dataclass
class _Wanted:
    contacts: set[str] = field(default_factory=set)
    chats: set[str] = field(default_factory=set)
    messages: set[str] = field(default_factory=set)


def _wanted(events: Iterable[tuple[str, ProviderEvent]]) -> dict[str, _Wanted]:
    wanted: dict[str, _Wanted] = defaultdict(_Wanted)
    for integration_id, event in events:
        want = wanted[integration_id]
        if isinstance(event, ReceivedMessage):
            want.contacts.add(event.sender.address)
            want.chats.add(event.chat.external_id)
            want.messages.add(event.provider_message_id)
            if event.reply_to_provider_id:
                want.messages.add(event.reply_to_provider_id)
        elif isinstance(event, EditedMessage | StatusUpdate):
            want.messages.add(event.provider_message_id)
        elif isinstance(event, DeletedMessages):
            want.messages.update(event.provider_message_ids)
        elif isinstance(event, Reaction):
            want.chats.add(event.chat.external_id)
            want.messages.add(event.provider_message_id)
        elif isinstance(event, ButtonPressed):
            if event.chat is not None:
                want.chats.add(event.chat.external_id)
            if event.provider_message_id:
                want.messages.add(event.provider_message_id)
    return wanted


_DIRECTIONS = tuple(d.value for d in Direction)
_CHUNK = 500  # bound parameters per IN list, well inside every database's limit


def _chunks(values: set[str]) -> list[list[str]]:
    ordered = sorted(values)
    return [ordered[i : i + _CHUNK] for i in range(0, len(ordered), _CHUNK)]


def _by_key_query(model: type[Row], key: str) -> Prepared:
    table = cast(Table, model.__table__)
    # The tenant is checked but kept away from the planner: with a plain `tenant_id = ?` SQLite
    # (no statistics) searched the tenant's index, reading all its contacts or conversations.
    return Prepared(
        select(*table.columns).where(
            unindexed(table.c.tenant_id) == bindparam("b_tenant"),
            table.c.integration_id == bindparam("b_integration"),
            table.c[key].in_(bindparam("b_keys", expanding=True)),
        )
    )


# Built once: constructing them per batch cost more than running them. Read as Core rows (the
# ORM's loading cost more than the queries): contacts and conversations as plain objects the
# repository adopts into the session before changing one, messages as the session's objects.
_CONTACTS = _by_key_query(Contact, "address")
_CONVERSATIONS = _by_key_query(Conversation, "external_id")
_MESSAGE_TABLE = cast(Table, Message.__table__)
# The tenant is checked on the rows, not in SQL: with `tenant_id = ?` in the query, SQLite's
# planner walked the tenant's whole message index instead of the unique (integration,
# direction, provider id) one (an integration has one tenant anyway).
_MESSAGES = Prepared(
    select(*_MESSAGE_TABLE.columns).where(
        _MESSAGE_TABLE.c.integration_id == bindparam("b_integration"),
        _MESSAGE_TABLE.c.direction.in_(_DIRECTIONS),
        _MESSAGE_TABLE.c.provider_message_id.in_(bindparam("b_ids", expanding=True)),
    )
)


async def _by_key(
    session: AsyncSession,
    model: type[Row],
    query: Prepared,
    key: str,
    tenant_id: str,
    integration_id: str,
    wanted: set[str],
) -> dict[Key, Row | None]:
    """The integration's rows whose `key` is wanted; None for each one not found."""
    found: dict[Key, Row | None] = {(integration_id, value): None for value in wanted}
    for chunk in _chunks(wanted):
        rows = await query.rows(
            session, {"b_tenant": tenant_id, "b_integration": integration_id, "b_keys": chunk}
        )
        # Plain objects until a change is due: the repository adopts one into the session then.
        found.update(
            ((integration_id, getattr(instance, key)), instance) for instance in from_rows(model, rows)
        )
    return found


async def load_lookups(
    session: AsyncSession, tenant_id: str, events: Iterable[tuple[str, ProviderEvent]]
) -> InboundLookups:
    lookups = InboundLookups()
    for integration_id, want in _wanted(events).items():
        lookups.contacts.update(
            await _by_key(session, Contact, _CONTACTS, "address", tenant_id, integration_id, want.contacts)
        )
        lookups.conversations.update(
            await _by_key(
                session, Conversation, _CONVERSATIONS, "external_id", tenant_id, integration_id, want.chats
            )
        )
        for chunk in _chunks(want.messages):
            for provider_id in chunk:
                lookups.messages[(integration_id, provider_id)] = []
            rows = await _MESSAGES.rows(session, {"b_integration": integration_id, "b_ids": chunk})
            for message in persistent(session, Message, rows):
                if message.tenant_id == tenant_id:
                    lookups.messages[(integration_id, message.provider_message_id or "")].append(message)
    return lookups
