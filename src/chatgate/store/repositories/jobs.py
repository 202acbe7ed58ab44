"""The job table: claim with a lease, finish, retry later, and find work to re-dispatch.

All methods are system-level (not tenant-scoped): workers act for every tenant, and a job
carries its tenant id onward to the tenant-scoped repositories its handler uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import (
    Insert,
    Select,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from chatgate.domain.ids import JOB_PREFIX, RAW_PREFIX, inbound_job_id, inbound_raw_id, new_id
from chatgate.store.insert_unless_present import insert_unless_present
from chatgate.store.models import Job, RawEvent
from chatgate.store.prepared import Prepared
from chatgate.store.unindexed import unindexed

_JOBS = cast(Table, Job.__table__)
_RAW_EVENTS = cast(Table, RawEvent.__table__)

# An inbound job, made from its raw event: named after it (`inbound_job_id`, in SQL), due since
# the event was received.
_INBOUND_JOB_ID = literal(JOB_PREFIX, String) + func.substr(
    _RAW_EVENTS.c.id, len(RAW_PREFIX) + 1, type_=String
)
_INBOUND_JOB_COLUMNS = (
    "id",
    "kind",
    "tenant_id",
    "subject_id",
    "status",
    "run_after",
    "attempts",
    "dispatched_at",
    "created_at",
)
# `status = 'pending'` spelled out, not bound: the partial index of pending raw events is used
# only where the query's own text implies its condition.
_RAW_PENDING = _RAW_EVENTS.c.status == literal_column("'pending'")


def _inbound_jobs_from_raw_events(dispatched_at: ColumnElement[Any]) -> Select[Any]:
    raw = _RAW_EVENTS.c
    return select(
        _INBOUND_JOB_ID,
        literal("inbound"),
        raw.tenant_id,
        raw.id,
        literal("pending"),
        raw.received_at,
        literal(0),
        dispatched_at,
        raw.received_at,
    )


def _insert_jobs_unless_present(dialect: str) -> Insert:
    """INSERT INTO jobs that skips a job already there (made meanwhile by another worker)."""
    return insert_unless_present(_JOBS, dialect, key=["id"])


def _make_inbound_jobs(dialect: str) -> Prepared:
    # By primary key: on `status = 'pending'` SQLite's planner (no statistics) would read every
    # pending raw event, a whole backlog, per batch.
    made = _inbound_jobs_from_raw_events(bindparam("b_now", type_=Job.dispatched_at.type)).where(
        _RAW_EVENTS.c.id.in_(bindparam("b_raw_ids", expanding=True)),
        unindexed(_RAW_EVENTS.c.status) == "pending",
    )
    return Prepared(_insert_jobs_unless_present(dialect).from_select(_INBOUND_JOB_COLUMNS, made))


# Built once per dialect: built per call, SQLAlchemy's statement construction and cache key
# took a quarter of a one-event inbound batch's CPU.
_MAKE_INBOUND_JOBS = {
    dialect: _make_inbound_jobs(dialect) for dialect in ("sqlite", "postgresql", "mysql", "mariadb")
}


def new_job(
    kind: str, tenant_id: str, subject_id: str, now: datetime, run_after: datetime | None = None
) -> Job:
    return Job(
        id=new_id("job"),
        kind=kind,
        tenant_id=tenant_id,
        subject_id=subject_id,
        status="pending",
        run_after=run_after or now,
        attempts=0,
        dispatched_at=now,  # published right after commit; the sweeper waits before re-publishing
        created_at=now,
    )


def job_row(
    kind: str, tenant_id: str, subject_id: str, now: datetime, *, job_id: str | None = None
) -> dict[str, object]:
    """The same as `new_job`, as a plain row for bulk inserts on the ingest path."""
    return {
        "id": job_id or new_id("job"),
        "kind": kind,
        "tenant_id": tenant_id,
        "subject_id": subject_id,
        "status": "pending",
        "run_after": now,
        "attempts": 0,
        "dispatched_at": now,
        "created_at": now,
    }


class JobRef(Protocol):
    """Anything that names a job (a `Job` row, or a worker's lighter record of its claim)."""

    @property
    def id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker now holds, as plain values (no ORM object)."""

    id: str
    tenant_id: str
    subject_id: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Reschedule:
    job_id: str
    run_after: datetime
    error: str | None
    count_attempt: bool


def _claimable(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(JOB_STATUS == "pending", Job.run_after <= now),
        and_(JOB_STATUS == "running", Job.lease_until < now),
    )


# `jobs.status` for statements that pick jobs by id.
# Without it SQLite preferred an index on status to a list of a few dozen ids, and read every
# job in that status (thousands of due jobs under a backlog) per claim.
JOB_STATUS = unindexed(_JOBS.c.status)


def held_by_worker(ids: str) -> ColumnElement[bool]:
    """The jobs listed in expanding parameter `ids` that the worker in `b_worker` holds."""
    return and_(
        _JOBS.c.id.in_(bindparam(ids, expanding=True)),
        JOB_STATUS == "running",
        _JOBS.c.leased_by == bindparam("b_worker"),
    )


def claimable(ids: str) -> ColumnElement[bool]:
    """The jobs listed in expanding parameter `ids` that may be claimed at `b_now`: due pending
    ones, and running ones whose lease expired."""
    return and_(
        _JOBS.c.id.in_(bindparam(ids, expanding=True)),
        or_(
            and_(JOB_STATUS == "pending", _JOBS.c.run_after <= bindparam("b_now")),
            and_(JOB_STATUS == "running", _JOBS.c.lease_until < bindparam("b_now")),
        ),
    )


# Prebuilt statements (built once, not per batch), shared by JobStore and the delivery worker.
# Claim: due pending jobs in b_claims, and running ones whose lease expired.
CLAIM = Prepared(
    _JOBS.update()
    .where(claimable("b_claims"))
    .values(
        status="running",
        lease_until=bindparam("b_until"),
        leased_by=bindparam("b_worker"),
        attempts=_JOBS.c.attempts + 1,
    )
)
_CLAIMED = Prepared(
    select(_JOBS.c.id, _JOBS.c.tenant_id, _JOBS.c.subject_id, _JOBS.c.attempts).where(
        held_by_worker("b_claims"), _JOBS.c.lease_until == bindparam("b_until")
    )
)
# Finish: the jobs in b_finished still held.
FINISH = Prepared(
    _JOBS.update()
    .where(held_by_worker("b_finished"))
    .values(status="done", finished_at=bindparam("b_now"), lease_until=None, last_error=None)
)
# Claim and finish in one write transaction (SQLite, see `claimable_plain`): read the claimable
# jobs, then close those still claimable, counting the attempt.
_CLAIMABLE = Prepared(
    select(_JOBS.c.id, _JOBS.c.tenant_id, _JOBS.c.subject_id, _JOBS.c.attempts).where(claimable("b_claims"))
)
_FINISH_CLAIMABLE = Prepared(
    _JOBS.update()
    .where(claimable("b_claims"))
    .values(
        status="done",
        attempts=_JOBS.c.attempts + 1,
        leased_by=bindparam("b_worker"),
        finished_at=bindparam("b_now"),
        lease_until=None,
        last_error=None,
    )
)
# Retry later (executemany): a job no longer held is left alone.
RETRY = Prepared(
    _JOBS.update()
    .where(
        _JOBS.c.id == bindparam("b_id"),
        JOB_STATUS == "running",
        _JOBS.c.leased_by == bindparam("b_worker"),
    )
    .values(
        status="pending",
        run_after=bindparam("b_run_after"),
        lease_until=None,
        last_error=bindparam("b_error"),
        attempts=_JOBS.c.attempts - bindparam("b_uncount"),
    )
)


def retry_params(items: Sequence[Reschedule]) -> list[dict[str, object]]:
    return [
        {
            "b_id": r.job_id,
            "b_run_after": r.run_after,
            "b_error": r.error,
            "b_uncount": 0 if r.count_attempt else 1,
        }
        for r in items
    ]


class JobStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    async def make_inbound_jobs(self, job_ids: Sequence[str], now: datetime) -> None:
        """Make the inbound jobs among `job_ids` that do not exist yet, for their raw events still
        pending. The ingest stores a raw event alone (the webhook's answer waits for nothing
        else); its job, named after it, is made here when a worker first takes it up, and then
        claimed like any job. A job id not named after a raw event (a replay's) makes nothing."""
        raw_ids = [inbound_raw_id(job_id) for job_id in job_ids]
        if not raw_ids:
            return
        await _MAKE_INBOUND_JOBS[self._dialect()].run(self.session, {"b_now": now, "b_raw_ids": raw_ids})

    async def requeue_inbound(self, raw_id: str, tenant_id: str, now: datetime) -> str:
        """The raw event's inbound job, due again now (made if it has none yet; a worker that
        held it loses its lease): an admin's replay. Its id."""
        job_id = inbound_job_id(raw_id)
        again = await self.session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status="pending",
                run_after=now,
                attempts=0,
                lease_until=None,
                leased_by=None,
                dispatched_at=now,
                last_error=None,
                finished_at=None,
            )
        )
        if again.rowcount != 1:  # type: ignore[attr-defined]
            job = new_job("inbound", tenant_id, raw_id, now)
            job.id = job_id
            self.session.add(job)
        return job_id

    async def adopt_waiting_raw_events(self, received_before: datetime, limit: int) -> int:
        """Make the inbound jobs of raw events pending since before `received_before` that have
        none: their queue message was lost before any worker took them up. The jobs are made not
        dispatched, so the sweep that called this publishes them; how many were made."""
        job = _JOBS.alias("existing")
        waiting = (
            _inbound_jobs_from_raw_events(literal(None, Job.dispatched_at.type))
            .where(
                _RAW_PENDING,
                _RAW_EVENTS.c.received_at < received_before,
                ~exists().where(job.c.id == _INBOUND_JOB_ID),
            )
            .limit(limit)
        )
        result = await self.session.execute(
            _insert_jobs_unless_present(self._dialect()).from_select(_INBOUND_JOB_COLUMNS, waiting)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def claim(self, job_id: str, worker: str, now: datetime, lease: timedelta) -> Job | None:
        """Take the job if it is due and nobody holds a live lease on it."""
        result = await self.session.execute(
            update(Job)
            .where(Job.id == job_id, _claimable(now))
            .values(status="running", lease_until=now + lease, leased_by=worker, attempts=Job.attempts + 1)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return await self.session.get(Job, job_id, populate_existing=True)

    async def claim_many(
        self, job_ids: Sequence[str], worker: str, now: datetime, lease: timedelta
    ) -> list[Job]:
        """Claim several jobs in one statement; returns the ones now held by `worker`, oldest first."""
        if not job_ids:
            return []
        until = now + lease
        await self.session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), _claimable(now))
            .values(status="running", lease_until=until, leased_by=worker, attempts=Job.attempts + 1)
        )
        query = (
            select(Job)
            .where(
                Job.id.in_(job_ids),
                Job.status == "running",
                Job.leased_by == worker,
                Job.lease_until == until,
            )
            .order_by(Job.id)
            .execution_options(populate_existing=True)
        )
        return list((await self.session.execute(query)).scalars())

    async def claim_plain(
        self, job_ids: Sequence[str], worker: str, now: datetime, lease: timedelta
    ) -> list[ClaimedJob]:
        """`claim_many` without ORM objects: one UPDATE and one SELECT of four columns."""
        if not job_ids:
            return []
        params = {"b_claims": list(job_ids), "b_now": now, "b_until": now + lease, "b_worker": worker}
        await CLAIM.run(self.session, params)
        rows = await _CLAIMED.rows(self.session, params)
        return [
            ClaimedJob(id_, tenant_id, subject_id, int(attempts))
            for id_, tenant_id, subject_id, attempts in rows
        ]

    async def claimable_plain(self, job_ids: Sequence[str], now: datetime) -> list[ClaimedJob]:
        """The jobs among `job_ids` that may be claimed now, claimed by nothing but this read.

        Only for a transaction that also finishes them (`finish_claimable`) while no other
        transaction can write in between: SQLite's one writer, whose turn the process's write
        gate gives. Nobody could see the job `running` between a claim and a finish there, so
        the claim's UPDATE (the batch's costliest statement: the job moves in both status
        indexes, and again when it finishes) is left out."""
        if not job_ids:
            return []
        rows = await _CLAIMABLE.rows(self.session, {"b_claims": list(job_ids), "b_now": now})
        return [
            ClaimedJob(id_, tenant_id, subject_id, int(attempts))
            for id_, tenant_id, subject_id, attempts in rows
        ]

    async def finish_claimable(self, job_ids: Sequence[str], worker: str, now: datetime) -> int:
        """Close jobs read by `claimable_plain` in this transaction, counting the attempt; how
        many were still claimable."""
        if not job_ids:
            return 0
        return await _FINISH_CLAIMABLE.run(
            self.session, {"b_claims": list(job_ids), "b_now": now, "b_worker": worker}
        )

    async def renew(self, job_id: str, worker: str, now: datetime, lease: timedelta) -> bool:
        """Extend our lease on a job we still hold; False if it is no longer ours."""
        table = _JOBS
        result = await self.session.execute(
            table.update()
            .where(table.c.id == job_id, table.c.status == "running", table.c.leased_by == worker)
            .values(lease_until=now + lease)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def finish_many(self, job_ids: Sequence[str], worker: str, now: datetime) -> int:
        """Close jobs we hold, in one statement; returns how many were still ours."""
        if not job_ids:
            return 0
        return await FINISH.run(self.session, {"b_finished": list(job_ids), "b_worker": worker, "b_now": now})

    async def retry_many(self, items: Sequence[Reschedule], worker: str) -> None:
        """`retry_later` for many jobs in one executemany (a job no longer ours is left alone)."""
        if not items:
            return
        await RETRY.run_many(self.session, [{**p, "b_worker": worker} for p in retry_params(items)])

    async def claimed(self, job_id: str, worker: str) -> Job | None:
        """The job, if this worker still holds it (re-read inside the effect transaction)."""
        query = select(Job).where(Job.id == job_id, Job.status == "running", Job.leased_by == worker)
        return (
            await self.session.execute(query.execution_options(populate_existing=True))
        ).scalar_one_or_none()

    async def finish(
        self, job: JobRef, worker: str, now: datetime, *, status: str = "done", error: str | None = None
    ) -> bool:
        """Close the job only if we still hold it; False means the lease was lost (roll back)."""
        result = await self.session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "running", Job.leased_by == worker)
            .values(status=status, finished_at=now, lease_until=None, last_error=error)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def retry_later(
        self, job: JobRef, worker: str, run_after: datetime, error: str | None, *, count_attempt: bool = True
    ) -> bool:
        values: dict[str, object] = {
            "status": "pending",
            "run_after": run_after,
            "lease_until": None,
            "last_error": error,
        }
        if not count_attempt:
            values["attempts"] = Job.attempts - 1  # waiting for a rate limit is not a failed attempt
        result = await self.session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "running", Job.leased_by == worker)
            .values(**values)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def due_for_dispatch(self, now: datetime, redispatch_after: timedelta, limit: int) -> list[Job]:
        """Pending jobs that are due and were not published recently, and running jobs whose lease expired."""
        stale = now - redispatch_after
        query = (
            select(Job)
            .where(
                or_(
                    and_(
                        Job.status == "pending",
                        Job.run_after <= now,
                        or_(
                            Job.dispatched_at.is_(None),
                            Job.dispatched_at < stale,
                            Job.dispatched_at < Job.run_after,
                        ),
                    ),
                    # Leases: searched in their own index (only running jobs have one); SQLite,
                    # without statistics, would read every running job by status instead.
                    and_(JOB_STATUS == "running", Job.lease_until < now),
                )
            )
            .order_by(Job.run_after)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars())

    async def mark_dispatched(self, job_ids: Sequence[str], now: datetime) -> None:
        """Record the publish; a job whose lease expired goes back to pending, so it is
        re-published once per `redispatch_after`, not on every sweep (its old holder can no
        longer finish it: `finish` needs the job running under that worker)."""
        if job_ids:
            await self.session.execute(
                update(Job)
                .where(Job.id.in_(job_ids), Job.status == "running", Job.lease_until < now)
                .values(status="pending", lease_until=None, leased_by=None)
            )
            await self.session.execute(update(Job).where(Job.id.in_(job_ids)).values(dispatched_at=now))

    async def purge_finished(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` jobs finished before `before`; how many were deleted.

        `run_after < before` adds nothing (a job finishes after it was due) but lets the
        (status, run_after) index bound the search to old jobs: without it every finished job,
        a day's worth under load, was read on each purge."""
        ids = list(
            (
                await self.session.execute(
                    select(Job.id)
                    .where(
                        Job.status.in_(("done", "dead")),
                        Job.run_after < before,
                        Job.finished_at < before,
                    )
                    .limit(limit)
                )
            ).scalars()
        )
        if ids:
            await self.session.execute(delete(Job).where(Job.id.in_(ids)))
        return len(ids)

    async def counts(self) -> dict[tuple[str, str], int]:
        from sqlalchemy import func

        query = select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        return {(kind, status): int(n) for kind, status, n in (await self.session.execute(query)).all()}
