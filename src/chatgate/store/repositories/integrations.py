"""Integrations of one tenant."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.errors import NotFound
from chatgate.store.models import Integration
from chatgate.store.pagination import Page
from chatgate.store.prepared import Prepared
from chatgate.store.repositories.base import TenantScoped

_INTEGRATIONS = cast(Table, Integration.__table__)
_COUNT_TRAFFIC = Prepared(
    _INTEGRATIONS.update()
    .where(_INTEGRATIONS.c.tenant_id == bindparam("b_tenant"), _INTEGRATIONS.c.id == bindparam("b_id"))
    .values(
        messages_received=_INTEGRATIONS.c.messages_received + bindparam("b_received"),
        messages_sent=_INTEGRATIONS.c.messages_sent + bindparam("b_sent"),
        last_activity_at=bindparam("b_at"),
    )
)


class IntegrationRepository(TenantScoped):
    async def add(self, integration: Integration) -> Integration:
        if integration.tenant_id != self.tenant_id:
            raise ValueError("integration belongs to another tenant")
        self.session.add(integration)
        await self.session.flush()
        return integration

    async def get(self, integration_id: str) -> Integration:
        return await self._get(Integration, integration_id, "integration")

    async def list(
        self, *, cursor: str | None, limit: int, kind: str | None = None, status: str | None = None
    ) -> Page[Integration]:
        query = self._select(Integration)
        if kind:
            query = query.where(Integration.kind == kind)
        if status:
            query = query.where(Integration.status == status)
        return await self._page(query, Integration, cursor, limit)

    async def delete(self, integration: Integration) -> None:
        await self.session.delete(integration)
        await self.session.flush()

    async def count_traffic(
        self, integration_id: str, *, received: int = 0, sent: int = 0, at: datetime
    ) -> None:
        # Core, built once: nothing in the session needs these columns refreshed, and matching
        # objects in it or building the statement cost more than running it.
        await _COUNT_TRAFFIC.run(
            self.session,
            {
                "b_tenant": self.tenant_id,
                "b_id": integration_id,
                "b_received": received,
                "b_sent": sent,
                "b_at": at,
            },
        )


class IntegrationRouting:
    """Unscoped lookups that resolve a provider's request to its integration (and so its tenant)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_public_id(self, kind: str, public_id: str) -> Integration:
        query = select(Integration).where(Integration.public_id == public_id, Integration.kind == kind)
        row = (await self.session.execute(query)).scalar_one_or_none()
        if row is None:
            raise NotFound("no such integration")
        return row

    async def by_provider_key(self, kind: str, provider_key: str) -> Integration | None:
        query = select(Integration).where(Integration.kind == kind, Integration.provider_key == provider_key)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def of_kind(
        self, kind: str, statuses: Sequence[str], *, after_id: str | None = None, limit: int = 500
    ) -> list[Integration]:
        """One page of every tenant's integrations of a kind, by id (for sweeps over all of them)."""
        query = select(Integration).where(Integration.kind == kind, Integration.status.in_(list(statuses)))
        if after_id is not None:
            query = query.where(Integration.id > after_id)
        return list((await self.session.execute(query.order_by(Integration.id).limit(limit))).scalars())


__all__ = ["IntegrationRepository", "IntegrationRouting", "NotFound"]
