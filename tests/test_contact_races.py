"""A first message's contact and conversation: when another worker stored the same (integration,
address) or (integration, chat) after this batch read its lookups, the insert loses the unique key
and the other worker's row is used, in the same transaction, which stays usable. PostgreSQL and
SQLite skip the insert (ON CONFLICT DO NOTHING, OR IGNORE); MariaDB rolls it back to a savepoint.
On every database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from chatgate.domain.inbound import ChatRef, Party
from chatgate.store.models import Contact, Conversation
from chatgate.store.repositories.conversations import ConversationRepository
from chatgate.store.repositories.inbound_lookups import InboundLookups
from tests.conftest import Api, unique
from tests.webhook_helpers import webhook_integration


async def test_a_contact_and_conversation_stored_meanwhile_are_used_instead_of_a_second_copy(
    api: Api,
) -> None:
    tenant = await api.tenant()
    integration_id = (await webhook_integration(api, tenant))["id"]
    address, chat = unique("addr"), ChatRef(unique("chat"), title="first title")
    now = datetime.now(UTC)
    async with api.container.db.transaction() as session:  # the other worker
        repo = ConversationRepository(session, tenant.id)
        theirs, created = await repo.upsert_contact(integration_id, Party(address, "Them"), now)
        assert created
        their_chat, created = await repo.upsert_conversation(integration_id, chat, theirs.id, now)
        assert created

    # This batch read its lookups before those commits: neither row was there.
    lookups = InboundLookups(
        contacts={(integration_id, address): None}, conversations={(integration_id, chat.external_id): None}
    )
    async with api.container.db.transaction() as session:
        repo = ConversationRepository(session, tenant.id, lookups)
        contact, changed = await repo.upsert_contact(integration_id, Party(address, "Them"), now)
        assert (contact.id, changed) == (theirs.id, False)
        conversation, created = await repo.upsert_conversation(integration_id, chat, contact.id, now)
        assert (conversation.id, created) == (their_chat.id, False)
        # The lost inserts were skipped or rolled back to their savepoints; the transaction goes on.
        again, changed = await repo.upsert_contact(integration_id, Party(address, "Renamed"), now)
        assert (again.id, changed) == (theirs.id, True)

    async with api.container.db.sessions() as session:
        contacts = await session.execute(
            select(Contact.display_name).where(
                Contact.integration_id == integration_id, Contact.address == address
            )
        )
        assert contacts.scalars().all() == ["Renamed"]
        count = await session.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(
                Conversation.integration_id == integration_id, Conversation.external_id == chat.external_id
            )
        )
        assert count == 1


async def test_a_new_contact_and_conversation_are_stored_with_every_column(api: Api) -> None:
    tenant = await api.tenant()
    integration_id = (await webhook_integration(api, tenant))["id"]
    address = unique("addr")
    now = datetime.now(UTC).replace(microsecond=0)
    async with api.container.db.transaction() as session:
        repo = ConversationRepository(session, tenant.id)
        party = Party(address, "Ann", username="ann", phone="+380501234567")
        contact, _ = await repo.upsert_contact(integration_id, party, now)
        conversation, _ = await repo.upsert_conversation(
            integration_id, ChatRef(address, title="Ann"), contact.id, now
        )

    async with api.container.db.sessions() as session:
        stored = await session.get_one(Contact, contact.id)
        assert (stored.tenant_id, stored.address, stored.display_name, stored.username, stored.phone) == (
            tenant.id,
            address,
            "Ann",
            "ann",
            "+380501234567",
        )
        assert stored.unreachable is False
        assert stored.created_at.replace(tzinfo=UTC) == now
        chat = await session.get_one(Conversation, conversation.id)
        assert (chat.contact_id, chat.external_id, chat.kind, chat.title) == (
            contact.id,
            address,
            "private",
            "Ann",
        )
        assert chat.last_message_at is None
