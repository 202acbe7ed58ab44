"""The integrations registry: records with encrypted credentials and a status machine.

Provider-specific connect flows (setWebhook, Graph validation, …) build on this; here the
record, its sealed credentials, masking and status transitions are kept consistent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.clock import Clock
from chatgate.domain.errors import Conflict, CryptoError, InvalidInput, NotFound
from chatgate.domain.events import EventType, IntegrationStatusData
from chatgate.domain.ids import new_id, new_public_id
from chatgate.domain.integrations import IntegrationKind, IntegrationStatus, can_transition
from chatgate.security.keyring.envelope import SecretBox
from chatgate.security.redaction import Redactor
from chatgate.services.fanout import Fanout, PendingFanout
from chatgate.store.db import Database
from chatgate.store.models import Integration
from chatgate.store.pagination import Page
from chatgate.store.repositories.events import EventLog, NewEvent
from chatgate.store.repositories.integrations import IntegrationRepository, IntegrationRouting
from chatgate.store.repositories.sealed import integration_credentials_aad


def status_changed_event(integration: Integration, previous: str) -> NewEvent | None:
    if integration.status == previous:
        return None
    data = IntegrationStatusData(
        integration_id=integration.id,
        provider=integration.kind,
        status=integration.status,
        previous_status=previous,
        reason=integration.status_reason,
    ).model_dump(mode="json")
    return NewEvent(EventType.INTEGRATION_STATUS_CHANGED, data, integration.id, None, None)


def mask(value: str) -> str:
    """Enough to recognise a credential, never enough to use it."""
    return "••••" + value[-4:] if len(value) >= 12 else "••••"


@dataclass(frozen=True)
class IntegrationChanges:
    name: str | None = None
    config: dict[str, Any] | None = None
    credentials: dict[str, str] | None = None
    enabled: bool | None = None


class IntegrationService:
    def __init__(
        self, db: Database, box: SecretBox, redactor: Redactor, clock: Clock, fanout: Fanout | None = None
    ) -> None:
        self.db = db
        self.box = box
        self.redactor = redactor
        self.clock = clock
        self.fanout = fanout

    async def create(
        self,
        tenant_id: str,
        *,
        kind: IntegrationKind,
        name: str,
        config: dict[str, Any],
        credentials: dict[str, str],
        provider_key: str | None = None,
    ) -> Integration:
        integration_id = new_id("int")
        self.redactor.register(*credentials.values())
        sealed = await self._seal(tenant_id, integration_id, credentials)
        integration = Integration(
            id=integration_id,
            tenant_id=tenant_id,
            kind=kind.value,
            name=name,
            public_id=new_public_id(),
            provider_key=provider_key,
            status=IntegrationStatus.PENDING.value,
            config=config,
            credentials_sealed=sealed,
            credentials_masked={k: mask(v) for k, v in credentials.items()},
        )
        try:
            async with self.db.transaction() as session:
                await IntegrationRepository(session, tenant_id).add(integration)
        except IntegrityError as exc:
            raise Conflict(f"this {kind.value} is already connected") from exc
        return integration

    async def get(self, tenant_id: str, integration_id: str) -> Integration:
        async with self.db.sessions() as session:
            return await IntegrationRepository(session, tenant_id).get(integration_id)

    async def by_id_unscoped(self, integration_id: str) -> Integration:
        """For operator-configured bindings (a seed endpoint bound to one integration)."""
        async with self.db.sessions() as session:
            row = await session.get(Integration, integration_id)
        if row is None:
            raise NotFound(f"integration '{integration_id}' does not exist")
        return row

    async def by_public_id(self, kind: str, public_id: str) -> Integration:
        """Unscoped: the integration a provider's request addresses (NotFound otherwise)."""
        async with self.db.sessions() as session:
            return await IntegrationRouting(session).by_public_id(kind, public_id)

    async def list(
        self, tenant_id: str, *, cursor: str | None, limit: int, kind: str | None, status: str | None
    ) -> Page[Integration]:
        async with self.db.sessions() as session:
            repo = IntegrationRepository(session, tenant_id)
            return await repo.list(cursor=cursor, limit=limit, kind=kind, status=status)

    async def update(self, tenant_id: str, integration_id: str, changes: IntegrationChanges) -> Integration:
        sealed: str | None = None
        if changes.credentials is not None:
            self.redactor.register(*changes.credentials.values())
            sealed = await self._seal(tenant_id, integration_id, changes.credentials)
        pending = None
        async with self.db.transaction() as session:
            await EventLog(session, tenant_id).lock()
            integration = await IntegrationRepository(session, tenant_id).get(integration_id)
            previous = integration.status
            if changes.name is not None:
                integration.name = changes.name
            if changes.config is not None:
                integration.config = changes.config
            if changes.credentials is not None:
                integration.credentials_sealed = sealed
                integration.credentials_masked = {k: mask(v) for k, v in changes.credentials.items()}
            if changes.enabled is False:
                self._move(integration, IntegrationStatus.DISABLED, "disabled by a user")
            elif changes.enabled is True and integration.status == IntegrationStatus.DISABLED:
                self._move(integration, IntegrationStatus.PENDING, None)
            pending = await self._record_status_change(session, integration, previous)
        await self._after_commit(pending)
        return integration

    async def set_status(
        self,
        tenant_id: str,
        integration_id: str,
        status: IntegrationStatus,
        reason: str | None,
        *,
        provider_status: dict[str, Any] | None = None,
    ) -> Integration:
        async with self.db.transaction() as session:
            await EventLog(session, tenant_id).lock()
            integration, previous = await self.set_status_in(
                session, tenant_id, integration_id, status, reason
            )
            if provider_status is not None:
                integration.provider_status = provider_status
            pending = await self._record_status_change(session, integration, previous)
        await self._after_commit(pending)
        return integration

    async def set_status_in(
        self,
        session: AsyncSession,
        tenant_id: str,
        integration_id: str,
        status: IntegrationStatus,
        reason: str | None,
    ) -> tuple[Integration, str]:
        """Change the status inside the caller's transaction; returns it with the previous status
        (the caller records the event with `status_changed_event`)."""
        integration = await IntegrationRepository(session, tenant_id).get(integration_id)
        previous = integration.status
        self._move(integration, status, reason)
        return integration, previous

    async def _record_status_change(
        self, session: AsyncSession, integration: Integration, previous: str
    ) -> PendingFanout | None:
        event = status_changed_event(integration, previous)
        if event is None:
            return None
        now = self.clock()
        stored = await EventLog(session, integration.tenant_id).append([event], now)
        if self.fanout is None:
            return None
        return await self.fanout.in_transaction(session, integration.tenant_id, stored, now)

    async def _after_commit(self, pending: PendingFanout | None) -> None:
        if pending is not None and self.fanout is not None:
            await self.fanout.after_commit(pending)

    async def delete(self, tenant_id: str, integration_id: str) -> None:
        async with self.db.transaction() as session:
            repo = IntegrationRepository(session, tenant_id)
            await repo.delete(await repo.get(integration_id))

    async def credentials(self, integration: Integration) -> dict[str, str]:
        if integration.credentials_sealed is None:
            return {}
        plaintext = await self.box.open(
            integration.credentials_sealed, integration_credentials_aad(integration.tenant_id, integration.id)
        )
        try:
            values: dict[str, str] = json.loads(plaintext)
        except ValueError as exc:
            raise CryptoError("sealed credentials are not valid JSON") from exc
        self.redactor.register(*values.values())
        return values

    def _move(self, integration: Integration, status: IntegrationStatus, reason: str | None) -> None:
        current = IntegrationStatus(integration.status)
        if not can_transition(current, status):
            raise InvalidInput(f"an integration cannot go from '{current}' to '{status}'")
        integration.status = status.value
        integration.status_reason = reason
        if status in (IntegrationStatus.ERROR, IntegrationStatus.NEEDS_REAUTH) and reason:
            integration.last_error = reason
            integration.last_error_at = self.clock()

    async def _seal(self, tenant_id: str, integration_id: str, credentials: dict[str, str]) -> str:
        plaintext = json.dumps(credentials, separators=(",", ":")).encode()
        return await self.box.seal(plaintext, integration_credentials_aad(tenant_id, integration_id))
