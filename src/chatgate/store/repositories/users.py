"""Users of one tenant and their refresh tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.errors import Conflict, NotFound
from chatgate.domain.ids import new_id
from chatgate.store.models import RefreshToken, User
from chatgate.store.pagination import Page
from chatgate.store.repositories.base import TenantScoped


class UserRepository(TenantScoped):
    async def create(self, *, email: str, name: str, password_hash: str, role: str) -> User:
        email = email.lower()
        if await self.by_email(email) is not None:
            raise Conflict(f"a user with e-mail '{email}' already exists in this tenant")
        user = User(
            id=new_id("usr"),
            tenant_id=self.tenant_id,
            email=email,
            name=name,
            password_hash=password_hash,
            role=role,
        )
        self.session.add(user)
        await self.session.flush()
        return user

    async def get(self, user_id: str) -> User:
        return await self._get(User, user_id, "user")

    async def by_email(self, email: str) -> User | None:
        query = self._select(User).where(User.email == email.lower())
        return (await self.session.execute(query)).scalar_one_or_none()

    async def list(self, *, cursor: str | None, limit: int) -> Page[User]:
        return await self._page(self._select(User), User, cursor, limit)

    async def count_active_owners(self) -> int:
        query = (
            select(func.count())
            .select_from(User)
            .where(User.tenant_id == self.tenant_id, User.role == "owner", User.is_active.is_(True))
        )
        return int((await self.session.execute(query)).scalar_one())

    async def delete(self, user: User) -> None:
        await self.session.delete(user)
        await self.session.flush()

    # --- refresh tokens ---------------------------------------------------------------------

    async def add_refresh_token(self, *, user_id: str, expires_at: datetime) -> RefreshToken:
        token = RefreshToken(
            id=new_id("rft"), tenant_id=self.tenant_id, user_id=user_id, expires_at=expires_at
        )
        self.session.add(token)
        await self.session.flush()
        return token

    async def use_refresh_token(self, token_id: str, now: datetime) -> RefreshToken:
        """Mark a refresh token used, atomically: of two concurrent uses only one wins."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == token_id,
                RefreshToken.tenant_id == self.tenant_id,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(used_at=now)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound("the refresh token was already used, revoked or has expired")
        token = await self.session.get(RefreshToken, token_id)
        assert token is not None
        return token

    async def revoke_refresh_tokens(self, user_id: str, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.tenant_id == self.tenant_id, RefreshToken.user_id == user_id)
            .where(RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )


class RefreshTokenJanitor:
    """Housekeeping across tenants: expired refresh tokens are useless and only grow the table."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def purge_expired(self, now: datetime) -> int:
        result = await self.session.execute(delete(RefreshToken).where(RefreshToken.expires_at < now))
        return int(result.rowcount)  # type: ignore[attr-defined]


__all__ = ["NotFound", "RefreshTokenJanitor", "UserRepository"]
