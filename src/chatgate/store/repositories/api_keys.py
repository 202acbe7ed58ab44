"""API keys of one tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from chatgate.domain.ids import new_id
from chatgate.store.models import ApiKey
from chatgate.store.pagination import Page
from chatgate.store.repositories.base import TenantScoped


class ApiKeyRepository(TenantScoped):
    async def create(
        self,
        *,
        name: str,
        lookup: str,
        secret_hash: str,
        scopes: list[str],
        created_by: str | None,
        expires_at: datetime | None,
    ) -> ApiKey:
        key = ApiKey(
            id=new_id("key"),
            tenant_id=self.tenant_id,
            name=name,
            lookup=lookup,
            secret_hash=secret_hash,
            scopes=scopes,
            created_by=created_by,
            expires_at=expires_at,
        )
        self.session.add(key)
        await self.session.flush()
        return key

    async def get(self, key_id: str) -> ApiKey:
        return await self._get(ApiKey, key_id, "API key")

    async def list(self, *, cursor: str | None, limit: int, include_revoked: bool) -> Page[ApiKey]:
        query = self._select(ApiKey)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return await self._page(query, ApiKey, cursor, limit)

    async def touch(self, key_id: str, now: datetime) -> None:
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.tenant_id == self.tenant_id, ApiKey.id == key_id)
            .values(last_used_at=now)
        )
