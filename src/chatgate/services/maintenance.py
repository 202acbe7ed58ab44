"""Housekeeping that keeps tables from growing without bound."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.clock import Clock
from chatgate.store.db import Database
from chatgate.store.models import IdempotencyKey
from chatgate.store.repositories.jobs import JobStore


class Maintenance:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        keep_finished_jobs: timedelta = timedelta(days=1),
        chunk: int = 500,
    ) -> None:
        self.db = db
        self.clock = clock
        self.keep_finished_jobs = keep_finished_jobs
        # Rows per delete transaction: under load ten minutes of finished jobs are hundreds of
        # thousands, and one transaction for them all would hold up every writer (with SQLite,
        # the whole process) for seconds; between chunks the others take their turn.
        self.chunk = chunk

    async def purge_finished_jobs(self) -> int:
        before = self.clock() - self.keep_finished_jobs
        return await self._in_chunks(lambda session: JobStore(session).purge_finished(before, self.chunk))

    async def purge_expired_idempotency_keys(self) -> int:
        now = self.clock()

        async def chunk(session: AsyncSession) -> int:
            expired = select(IdempotencyKey.id).where(IdempotencyKey.expires_at < now).limit(self.chunk)
            ids = list((await session.execute(expired)).scalars())
            if ids:
                await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids)))
            return len(ids)

        return await self._in_chunks(chunk)

    async def _in_chunks(self, purge: Callable[[AsyncSession], Awaitable[int]]) -> int:
        """Run `purge` (deletes up to `chunk` rows) a transaction at a time until it is done."""
        purged = 0
        while True:
            async with self.db.transaction() as session:
                deleted = await purge(session)
            purged += deleted
            if deleted < self.chunk:
                return purged
            await asyncio.sleep(0)  # let work queued behind the write gate go first
