"""Jobs: the durable record of work. Queues carry only pointers to these rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from chatgate.store.models.base import ID, Base
from chatgate.store.types import utcnow

_LEASED = text("lease_until IS NOT NULL")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_run_after", "status", "run_after"),
        # Only running jobs have a lease, and only the sweeper's "lease expired" search looks
        # for one: the other jobs stay out of the index (MariaDB has no partial indexes).
        Index("ix_jobs_lease_until", "lease_until", sqlite_where=_LEASED, postgresql_where=_LEASED),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # inbound | send | deliver
    tenant_id: Mapped[str] = mapped_column(ID)
    # The raw event, message or delivery. Not indexed: no statement looks a job up by it.
    subject_id: Mapped[str] = mapped_column(ID)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|running|done|dead
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column()
    leased_by: Mapped[str | None] = mapped_column(String(80))
    dispatched_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class Lease(Base):
    """Exclusive ownership of a long-running task (a bot's long poll, a live account session).

    One row per task; the owner renews `expires_at` with a heartbeat and another process may
    take the task over only once it has expired.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(191), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column()
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
