"""Leases: one owner at a time for a long-running task, taken over only after expiry.

Portable across SQLite, PostgreSQL and MariaDB: a conditional UPDATE renews or steals an
expired lease, and the primary key makes two first-time INSERTs race safely.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.store.db import Database
from chatgate.store.models import Lease


class LeaseStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def acquire(self, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Take or renew `name` for `owner` until now + ttl; False while someone else holds it."""
        async with self.db.transaction() as session:
            if await self._take(session, name, owner, now, ttl):
                return True
        try:
            async with self.db.transaction() as session:
                session.add(Lease(name=name, owner=owner, expires_at=now + ttl, acquired_at=now))
            return True
        except IntegrityError:
            return False  # another process inserted it first (or holds it)

    @staticmethod
    async def _take(session: AsyncSession, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        result = await session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.owner == owner, Lease.expires_at < now))
            .values(owner=owner, expires_at=now + ttl)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release(self, name: str, owner: str) -> None:
        async with self.db.transaction() as session:
            await session.execute(delete(Lease).where(Lease.name == name, Lease.owner == owner))

    async def holder(self, name: str, now: datetime) -> str | None:
        async with self.db.sessions() as session:
            row = (await session.execute(select(Lease).where(Lease.name == name))).scalar_one_or_none()
        return row.owner if row is not None and row.expires_at >= now else None
