"""Tenants, users and API keys: who may use a tenant and how."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from chatgate.domain.access import ROLE_RANK, Role, Scope
from chatgate.domain.clock import Clock
from chatgate.domain.errors import Conflict, InvalidInput, PermissionDenied
from chatgate.domain.principal import Principal
from chatgate.security.api_keys import generate_api_key
from chatgate.security.passwords import MIN_PASSWORD_LENGTH, hash_password
from chatgate.store.db import Database
from chatgate.store.models import ApiKey, Tenant, User
from chatgate.store.pagination import Page
from chatgate.store.repositories.api_keys import ApiKeyRepository
from chatgate.store.repositories.tenants import TenantDirectory
from chatgate.store.repositories.users import RefreshTokenJanitor, UserRepository


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    plaintext: str


@dataclass(frozen=True)
class BootstrapResult:
    tenant: Tenant
    owner: User
    api_key: CreatedKey


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")


class AccessService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    # --- tenants ----------------------------------------------------------------------------

    async def bootstrap_tenant(
        self, *, name: str, slug: str, owner_email: str, owner_password: str, external_id: str | None = None
    ) -> BootstrapResult:
        """A tenant with its owner and a manage+send+read API key, in one transaction."""
        _check_password(owner_password)
        password_hash = await hash_password(owner_password)
        async with self.db.transaction() as session:
            tenant = await TenantDirectory(session).create(name=name, slug=slug, external_id=external_id)
            owner = await UserRepository(session, tenant.id).create(
                email=owner_email, name="", password_hash=password_hash, role=Role.OWNER.value
            )
            created = await self._new_key(
                ApiKeyRepository(session, tenant.id), "bootstrap", list(Scope), f"user:{owner.id}", None
            )
        return BootstrapResult(tenant, owner, created)

    async def tenant(self, tenant_id: str) -> Tenant:
        async with self.db.sessions() as session:
            return await TenantDirectory(session).get(tenant_id)

    async def update_tenant(self, tenant_id: str, *, name: str | None, external_id: str | None) -> Tenant:
        async with self.db.transaction() as session:
            directory = TenantDirectory(session)
            tenant = await directory.get(tenant_id)
            if external_id is not None:
                other = await directory.by_external_id(external_id)
                if other is not None and other.id != tenant_id:
                    raise Conflict(f"external id '{external_id}' is linked to another tenant")
                tenant.external_id = external_id or None
            if name is not None:
                tenant.name = name
        return tenant

    # --- users ------------------------------------------------------------------------------

    async def create_user(
        self, actor: Principal, *, email: str, name: str, password: str, role: Role
    ) -> User:
        self._may_grant(actor, role)
        _check_password(password)
        password_hash = await hash_password(password)
        async with self.db.transaction() as session:
            return await UserRepository(session, actor.tenant_id).create(
                email=email, name=name, password_hash=password_hash, role=role.value
            )

    async def list_users(self, tenant_id: str, *, cursor: str | None, limit: int) -> Page[User]:
        async with self.db.sessions() as session:
            return await UserRepository(session, tenant_id).list(cursor=cursor, limit=limit)

    async def get_user(self, tenant_id: str, user_id: str) -> User:
        async with self.db.sessions() as session:
            return await UserRepository(session, tenant_id).get(user_id)

    async def update_user(
        self,
        actor: Principal,
        user_id: str,
        *,
        name: str | None,
        role: Role | None,
        is_active: bool | None,
        password: str | None,
    ) -> User:
        password_hash = None
        if password is not None:
            _check_password(password)
            password_hash = await hash_password(password)
        async with self.db.transaction() as session:
            users = UserRepository(session, actor.tenant_id)
            user = await users.get(user_id)
            self._may_grant(actor, Role(user.role))  # may not touch someone above oneself
            if role is not None:
                self._may_grant(actor, role)
            losing_owner = user.role == Role.OWNER and (
                (role is not None and role != Role.OWNER) or is_active is False
            )
            if losing_owner and await users.count_active_owners() <= 1:
                raise Conflict("a tenant must keep at least one active owner")
            if name is not None:
                user.name = name
            if role is not None:
                user.role = role.value
            if is_active is not None:
                user.is_active = is_active
                if not is_active:
                    await users.revoke_refresh_tokens(user.id, self.clock())
            if password_hash is not None:
                user.password_hash = password_hash
                await users.revoke_refresh_tokens(user.id, self.clock())
        return user

    async def delete_user(self, actor: Principal, user_id: str) -> None:
        async with self.db.transaction() as session:
            users = UserRepository(session, actor.tenant_id)
            user = await users.get(user_id)
            self._may_grant(actor, Role(user.role))
            if user.role == Role.OWNER and await users.count_active_owners() <= 1:
                raise Conflict("a tenant must keep at least one active owner")
            await users.delete(user)

    @staticmethod
    def _may_grant(actor: Principal, role: Role) -> None:
        # API keys and external users act within their role; nobody grants above their own.
        actor_rank = ROLE_RANK[actor.role] if actor.role is not None else -1
        if ROLE_RANK[role] > actor_rank:
            raise PermissionDenied(f"only a user at least '{role}' may grant or change the role '{role}'")

    async def purge_expired_refresh_tokens(self) -> int:
        async with self.db.transaction() as session:
            return await RefreshTokenJanitor(session).purge_expired(self.clock())

    # --- API keys ---------------------------------------------------------------------------

    async def create_api_key(
        self, actor: Principal, *, name: str, scopes: list[Scope], expires_in_days: int | None
    ) -> CreatedKey:
        if not scopes:
            raise InvalidInput("an API key needs at least one scope")
        expires_at = self.clock() + timedelta(days=expires_in_days) if expires_in_days else None
        async with self.db.transaction() as session:
            repo = ApiKeyRepository(session, actor.tenant_id)
            return await self._new_key(repo, name, scopes, f"{actor.actor_type}:{actor.actor_id}", expires_at)

    async def list_api_keys(
        self, tenant_id: str, *, cursor: str | None, limit: int, include_revoked: bool
    ) -> Page[ApiKey]:
        async with self.db.sessions() as session:
            return await ApiKeyRepository(session, tenant_id).list(
                cursor=cursor, limit=limit, include_revoked=include_revoked
            )

    async def get_api_key(self, tenant_id: str, key_id: str) -> ApiKey:
        async with self.db.sessions() as session:
            return await ApiKeyRepository(session, tenant_id).get(key_id)

    async def revoke_api_key(self, tenant_id: str, key_id: str) -> ApiKey:
        async with self.db.transaction() as session:
            key = await ApiKeyRepository(session, tenant_id).get(key_id)
            if key.revoked_at is None:
                key.revoked_at = self.clock()
        return key

    @staticmethod
    async def _new_key(
        repo: ApiKeyRepository, name: str, scopes: list[Scope], created_by: str, expires_at: datetime | None
    ) -> CreatedKey:
        generated = generate_api_key()
        key = await repo.create(
            name=name,
            lookup=generated.lookup,
            secret_hash=generated.secret_hash,
            scopes=sorted({s.value for s in scopes}),
            created_by=created_by,
            expires_at=expires_at,
        )
        return CreatedKey(key, generated.plaintext)
