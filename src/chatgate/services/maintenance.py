"""Housekeeping that keeps tables from growing without bound."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from chatgate.domain.clock import Clock
from chatgate.store.db import Database
from chatgate.store.models import IdempotencyKey
from chatgate.store.repositories.jobs import JobStore


class Maintenance:
    def __init__(
        self, db: Database, clock: Clock, *, keep_finished_jobs: timedelta = timedelta(days=1)
    ) -> None:
        self.db = db
        self.clock = clock
        self.keep_finished_jobs = keep_finished_jobs

    async def purge_finished_jobs(self) -> int:
        async with self.db.transaction() as session:
            return await JobStore(session).purge_finished(self.clock() - self.keep_finished_jobs)

    async def purge_expired_idempotency_keys(self) -> int:
        async with self.db.transaction() as session:
            result = await session.execute(
                delete(IdempotencyKey).where(IdempotencyKey.expires_at < self.clock())
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
