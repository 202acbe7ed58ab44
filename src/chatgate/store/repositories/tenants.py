"""Tenants themselves, and the few lookups that must happen before a tenant is known
(login by e-mail, API key by its public part). Nothing here returns tenant-owned data
beyond what authentication needs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.errors import Conflict, NotFound
from chatgate.domain.ids import new_id
from chatgate.store.models import ApiKey, Tenant, TenantSequence, User


class TenantDirectory:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, *, name: str, slug: str, external_id: str | None = None) -> Tenant:
        if await self.by_slug(slug) is not None:
            raise Conflict(f"a tenant with slug '{slug}' already exists")
        tenant = Tenant(id=new_id("ten"), name=name, slug=slug, external_id=external_id)
        self.session.add(tenant)
        await self.session.flush()
        self.session.add(TenantSequence(tenant_id=tenant.id, last_sequence=0))
        await self.session.flush()
        return tenant

    async def get(self, tenant_id: str) -> Tenant:
        tenant = await self.session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant '{tenant_id}' does not exist")
        return tenant

    async def by_slug(self, slug: str) -> Tenant | None:
        return (await self.session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none()

    async def by_external_id(self, external_id: str) -> Tenant | None:
        query = select(Tenant).where(Tenant.external_id == external_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def count(self) -> int:
        return len((await self.session.execute(select(Tenant.id))).all())


class AuthLookup:
    """Unscoped lookups used only to authenticate a caller."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def users_by_email(self, email: str) -> list[User]:
        query = select(User).where(User.email == email.lower())
        return list((await self.session.execute(query)).scalars())

    async def api_key_by_lookup(self, lookup: str) -> ApiKey | None:
        return (
            await self.session.execute(select(ApiKey).where(ApiKey.lookup == lookup))
        ).scalar_one_or_none()
