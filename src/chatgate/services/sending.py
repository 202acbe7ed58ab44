"""Accepting sends: `POST /v1/messages` → a queued message and its job, in one transaction.

`Idempotency-Key`: the same key within its lifetime (24 h by default) returns the same
message and sends nothing again; the same key with a different request is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from chatgate.domain.clock import Clock
from chatgate.domain.errors import Conflict, InvalidInput
from chatgate.domain.ids import new_id
from chatgate.domain.inbound import ChatRef, Party
from chatgate.domain.integrations import IntegrationStatus
from chatgate.domain.messages import ConversationKind, Direction, MessageStatus
from chatgate.domain.windows import has_window, recipient_address, recipient_kind, window_problem
from chatgate.services.fanout import Publish
from chatgate.store.db import Database
from chatgate.store.models import IdempotencyKey, Message
from chatgate.store.repositories.conversations import ConversationRepository
from chatgate.store.repositories.integrations import IntegrationRepository
from chatgate.store.repositories.jobs import new_job
from chatgate.workers.queue import QueueItem

_UNSENDABLE = {IntegrationStatus.DISABLED, IntegrationStatus.NEEDS_REAUTH}


@dataclass(frozen=True)
class SendRequest:
    conversation_id: str | None = None
    integration_id: str | None = None
    to: str | None = None
    text: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    reply_to_message_id: str | None = None
    buttons: list[Any] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # provider-specific: parse_mode, template…
    to_kind: ConversationKind = ConversationKind.PRIVATE  # with `to`: a private chat, group or channel

    def fingerprint(self) -> str:
        canonical = json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Accepted:
    message: Message
    replayed: bool


class SendService:
    def __init__(
        self,
        db: Database,
        publish: Publish,
        clock: Clock,
        *,
        idempotency_ttl: timedelta = timedelta(hours=24),
    ) -> None:
        self.db = db
        self.publish = publish
        self.clock = clock
        self.idempotency_ttl = idempotency_ttl

    async def accept(self, tenant_id: str, request: SendRequest, idempotency_key: str | None) -> Accepted:
        if not request.text and not request.attachments and not request.options.get("template"):
            raise InvalidInput("a message needs text or at least one attachment (or a template)")
        try:
            return await self._accept(tenant_id, request, idempotency_key)
        except IntegrityError:
            # A concurrent request with the same Idempotency-Key committed first: answer with its message.
            if idempotency_key is None:
                raise
            replay = await self._replay(tenant_id, request, idempotency_key)
            if replay is None:
                raise
            return replay

    async def _replay(self, tenant_id: str, request: SendRequest, key: str) -> Accepted | None:
        async with self.db.sessions() as session:
            row = (
                await session.execute(
                    select(IdempotencyKey).where(
                        IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key
                    )
                )
            ).scalar_one_or_none()
            if row is None or row.expires_at <= self.clock():
                return None
            if row.request_hash != request.fingerprint():
                raise Conflict("this Idempotency-Key was already used for a different request")
            message = await ConversationRepository(session, tenant_id).get_message(row.message_id)
        return Accepted(message, True)

    async def _accept(self, tenant_id: str, request: SendRequest, key: str | None) -> Accepted:
        now = self.clock()
        if key is not None:
            replay = await self._replay(tenant_id, request, key)
            if replay is not None:
                return replay
        async with self.db.transaction() as session:
            if key is not None:  # an expired key may be reused
                await session.execute(
                    delete(IdempotencyKey).where(
                        IdempotencyKey.tenant_id == tenant_id,
                        IdempotencyKey.key == key,
                        IdempotencyKey.expires_at <= now,  # never a live key another request just wrote
                    )
                )
            conversations = ConversationRepository(session, tenant_id)
            if request.conversation_id:
                conversation = await conversations.get_conversation(request.conversation_id)
            elif request.integration_id and request.to:
                chosen = await IntegrationRepository(session, tenant_id).get(request.integration_id)
                to = recipient_address(chosen.kind, chosen.config, request.to)  # as inbound spells it
                kind = request.to_kind
                if kind == ConversationKind.PRIVATE:
                    kind = recipient_kind(chosen.kind, to)
                contact_id = None
                if kind == ConversationKind.PRIVATE:
                    contact, _ = await conversations.upsert_contact(request.integration_id, Party(to), now)
                    contact_id = contact.id
                conversation, _ = await conversations.upsert_conversation(
                    request.integration_id, ChatRef(to, kind), contact_id, now
                )
            else:
                raise InvalidInput("say where to send: 'conversation_id', or 'integration_id' with 'to'")
            integration = await IntegrationRepository(session, tenant_id).get(conversation.integration_id)
            if IntegrationStatus(integration.status) in _UNSENDABLE:
                raise Conflict(
                    f"integration '{integration.id}' is {integration.status}: "
                    + ("re-enable it first" if integration.status == "disabled" else "reconnect it first")
                )
            if has_window(integration.kind, integration.config) and not request.options.get("template"):
                # Refused here, before Meta or Twilio would refuse it (and charge nothing for it).
                problem = window_problem(await conversations.last_inbound_at(conversation.id), now)
                if problem is not None:
                    raise InvalidInput(problem)
            reply_provider_id = None
            if request.reply_to_message_id:
                target = await conversations.get_message(request.reply_to_message_id)
                if target.conversation_id != conversation.id:
                    raise InvalidInput("'reply_to_message_id' must be a message of the same conversation")
                reply_provider_id = target.provider_message_id
            message = await conversations.add_message(
                Message(
                    id=new_id("msg"),
                    tenant_id=tenant_id,
                    integration_id=integration.id,
                    conversation_id=conversation.id,
                    contact_id=conversation.contact_id,
                    direction=Direction.OUTBOUND.value,
                    status=MessageStatus.QUEUED.value,
                    text=request.text,
                    attachments=request.attachments,
                    buttons=request.buttons,
                    send_options=request.options or None,
                    reply_to_message_id=request.reply_to_message_id,
                    reply_to_provider_id=reply_provider_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            job = new_job("send", tenant_id, message.id, now)
            session.add(job)
            if key is not None:
                session.add(
                    IdempotencyKey(
                        tenant_id=tenant_id,
                        key=key,
                        request_hash=request.fingerprint(),
                        message_id=message.id,
                        expires_at=now + self.idempotency_ttl,
                        created_at=now,
                    )
                )
        await self.publish("send", [QueueItem(job.id, tenant_id)])
        return Accepted(message, False)

    async def get(self, tenant_id: str, message_id: str) -> Message:
        async with self.db.sessions() as session:
            return await ConversationRepository(session, tenant_id).get_message(message_id)
