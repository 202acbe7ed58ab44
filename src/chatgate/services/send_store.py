"""The send path's batched statements (SQLAlchemy Core, no ORM objects per send).

Loading: the claimed jobs' messages with their recipients (one join) and their integrations
(one query). Recording: many `sent` outcomes in one transaction — forward-only status
updates (compare-and-set per row, all or nothing), one log append and one traffic count per
tenant and integration.

(Queries belong in `store/repositories`; this module lives beside the send worker until the
send repository moves there.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.events import EventType
from chatgate.domain.messages import MessageStatus
from chatgate.store.models import Conversation, Integration, Message
from chatgate.store.repositories.events import NewEvent

_MESSAGES = cast(Table, Message.__table__)
_CONVERSATIONS = cast(Table, Conversation.__table__)
_INTEGRATIONS = cast(Table, Integration.__table__)


@dataclass(frozen=True, slots=True)
class MessageRow:
    """What a send needs of its message and conversation."""

    id: str
    tenant_id: str
    integration_id: str
    conversation_id: str
    contact_id: str | None
    status: str
    text: str | None
    attachments: list[dict[str, Any]]
    buttons: list[Any]
    send_options: dict[str, Any] | None
    reply_to_provider_id: str | None
    recipient: str  # the conversation's external id


@dataclass(frozen=True, slots=True)
class IntegrationRow:
    id: str
    tenant_id: str
    kind: str
    public_id: str
    status: str
    config: dict[str, Any]
    credentials_sealed: str | None


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One accepted send to record: its message moves to `sent` with the provider's id."""

    tenant_id: str
    message: MessageRow
    provider_message_id: str
    provider: str


def sent_status_data(record: SentRecord) -> dict[str, Any]:
    """`MessageStatusData` of a queued → sent move as a plain dict (what `model_dump` gives for
    these fields; a test holds the two equal), without validating per send."""
    return {
        "message_id": record.message.id,
        "integration_id": record.message.integration_id,
        "provider": record.provider,
        "conversation_id": record.message.conversation_id,
        "status": MessageStatus.SENT.value,
        "previous_status": MessageStatus.QUEUED.value,
        "error_code": None,
        "error_message": None,
        "provider_message_id": record.provider_message_id,
    }


class SendStore:
    def __init__(self, session: AsyncSession, *, multi_rowcount: bool = False) -> None:
        """`multi_rowcount`: the driver counts the rows an executemany changed (not asyncpg)."""
        self.session = session
        self.multi_rowcount = multi_rowcount

    async def messages(self, message_ids: Iterable[str]) -> dict[str, MessageRow]:
        ids = list(set(message_ids))
        if not ids:
            return {}
        m, c = _MESSAGES.c, _CONVERSATIONS.c
        query = (
            select(
                m.id,
                m.tenant_id,
                m.integration_id,
                m.conversation_id,
                m.contact_id,
                m.status,
                m.text,
                m.attachments,
                m.buttons,
                m.send_options,
                m.reply_to_provider_id,
                c.external_id,
            )
            .select_from(_MESSAGES.join(_CONVERSATIONS, c.id == m.conversation_id))
            .where(m.id.in_(ids))
        )
        return {
            r.id: MessageRow(
                r.id,
                r.tenant_id,
                r.integration_id,
                r.conversation_id,
                r.contact_id,
                r.status,
                r.text,
                list(r.attachments or []),
                list(r.buttons or []),
                dict(r.send_options) if r.send_options else None,
                r.reply_to_provider_id,
                r.external_id,
            )
            for r in await self.session.execute(query)
        }

    async def integrations(self, integration_ids: Iterable[str]) -> dict[str, IntegrationRow]:
        ids = list(set(integration_ids))
        if not ids:
            return {}
        i = _INTEGRATIONS.c
        query = select(
            i.id, i.tenant_id, i.kind, i.public_id, i.status, i.config, i.credentials_sealed
        ).where(i.id.in_(ids))
        return {
            r.id: IntegrationRow(
                r.id, r.tenant_id, r.kind, r.public_id, r.status, dict(r.config or {}), r.credentials_sealed
            )
            for r in await self.session.execute(query)
        }

    async def mark_sent(
        self, records: Sequence[SentRecord], now: datetime
    ) -> dict[str, list[NewEvent]] | None:
        """Move every message from `queued` to `sent`; the events, per tenant.

        All or nothing: None when some message was not `queued` any more (the caller rolls
        back and records those sends one by one, with the general forward-only rule).
        Compare-and-set per row (`WHERE status = 'queued'`); where the driver cannot count
        the rows an executemany changed (asyncpg), the rows are read and locked first.
        """
        if not records:
            return {}
        m = _MESSAGES.c
        if not self.multi_rowcount:
            ids = [r.message.id for r in records]
            query = (
                select(m.id).where(m.id.in_(ids), m.status == MessageStatus.QUEUED.value).with_for_update()
            )
            if len((await self.session.execute(query)).all()) != len(set(ids)):
                return None
        statement = (
            _MESSAGES.update()
            .where(m.id == bindparam("b_id"), m.status == MessageStatus.QUEUED.value)
            .values(
                status=MessageStatus.SENT.value,
                sent_at=now,
                updated_at=now,
                provider_message_id=bindparam("b_provider_id"),
            )
        )
        result = await self.session.execute(
            statement,
            [{"b_id": r.message.id, "b_provider_id": r.provider_message_id} for r in records],
        )
        if self.multi_rowcount and result.rowcount != len(records):  # type: ignore[attr-defined]
            return None
        events: dict[str, list[NewEvent]] = defaultdict(list)
        for r in records:
            data = sent_status_data(r)
            events[r.tenant_id].append(
                NewEvent(
                    EventType.MESSAGE_STATUS,
                    data,
                    r.message.integration_id,
                    r.message.conversation_id,
                    f"status:{r.message.id}:{MessageStatus.SENT.value}",
                )
            )
        return events
