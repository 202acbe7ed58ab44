"""The audit log: append-only, read by a tenant's owners and admins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.store.models import AuditEntry
from chatgate.store.pagination import Page
from chatgate.store.repositories.base import TenantScoped


class AuditWriter:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, entry: AuditEntry) -> None:
        self.session.add(entry)
        await self.session.flush()


class AuditRepository(TenantScoped):
    async def list(
        self,
        *,
        cursor: str | None,
        limit: int,
        action: str | None = None,
        actor_id: str | None = None,
        since: datetime | None = None,
    ) -> Page[AuditEntry]:
        query = self._select(AuditEntry)
        if action:
            query = query.where(AuditEntry.action == action)
        if actor_id:
            query = query.where(AuditEntry.actor_id == actor_id)
        if since:
            query = query.where(AuditEntry.created_at >= since)
        return await self._page(query, AuditEntry, cursor, limit)

    async def get(self, entry_id: int) -> AuditEntry:
        return await self._get(AuditEntry, entry_id, "audit entry")
