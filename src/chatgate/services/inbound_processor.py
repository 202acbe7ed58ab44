"""The inbound worker: raw events → normalized events → contacts, conversations, messages → log.

A tenant's raw events are processed in order, a batch per transaction. An event's job is made
when a worker first takes it up (the ingest stores the raw event alone; the sweeper makes the
jobs of events whose queue message was lost). Exactly-once effect: jobs are claimed with a
lease; all effects, the log append and the jobs' completion commit together, and completion
only succeeds while we still hold the leases. A worker that lost a
lease (too slow, or presumed dead) rolls the whole batch back. If a batch fails for any other
reason, its events are retried one by one so one bad event cannot hold up the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.clock import Clock
from chatgate.domain.errors import InvalidInput
from chatgate.domain.inbound import ProviderEvent
from chatgate.providers.registry import AdapterRegistry
from chatgate.services.fanout import Fanout
from chatgate.services.inbound_apply import InboundApplier, StatusTooEarly
from chatgate.store.db import Database
from chatgate.store.models import RawEvent
from chatgate.store.prepared import Prepared
from chatgate.store.repositories.conversations import ConversationRepository
from chatgate.store.repositories.events import EventLog, NewEvent
from chatgate.store.repositories.inbound_lookups import load_lookups
from chatgate.store.repositories.integrations import IntegrationRepository
from chatgate.store.repositories.jobs import ClaimedJob, JobStore
from chatgate.store.unindexed import unindexed
from chatgate.workers.queue import QueueItem

log = logging.getLogger(__name__)

# How long a status report may wait for the send it reports on to commit (retried with backoff
# meanwhile); after that it concerns a message we never sent (another app on the same number).
STATUS_GRACE = timedelta(minutes=2)


_RAW_EVENTS = cast(Table, RawEvent.__table__)


@dataclass(slots=True)
class _Raw:
    """A raw event as processing needs it (plain values: loading ORM objects cost more than
    the processing itself); its outcome is written back with the batch's others."""

    id: str
    integration_id: str
    kind: str
    headers: dict[str, Any]
    body: bytes
    received_at: datetime
    status: str
    error: str | None = None
    processed_at: datetime | None = None


# By primary key: with a plain `tenant_id = ?` SQLite's planner (no statistics) searched the
# tenant's index, reading every raw event of the tenant per batch. Built once: constructing a
# statement per batch cost more than running it.
_LOAD_RAWS = Prepared(
    select(
        _RAW_EVENTS.c.id,
        _RAW_EVENTS.c.integration_id,
        _RAW_EVENTS.c.kind,
        _RAW_EVENTS.c.headers,
        _RAW_EVENTS.c.body,
        _RAW_EVENTS.c.received_at,
        _RAW_EVENTS.c.status,
    ).where(
        _RAW_EVENTS.c.id.in_(bindparam("b_ids", expanding=True)),
        unindexed(_RAW_EVENTS.c.tenant_id) == bindparam("b_tenant"),
    )
)
_SAVE_OUTCOMES = Prepared(
    _RAW_EVENTS.update()
    .where(_RAW_EVENTS.c.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), error=bindparam("b_error"), processed_at=bindparam("b_at"))
)


async def _load_raws(session: AsyncSession, tenant_id: str, ids: list[str]) -> dict[str, _Raw]:
    rows = await _LOAD_RAWS.rows(session, {"b_ids": ids, "b_tenant": tenant_id})
    return {row[0]: _Raw(*row) for row in rows}


async def _save_raw_outcomes(session: AsyncSession, raws: list[_Raw]) -> None:
    if not raws:
        return
    await _SAVE_OUTCOMES.run_many(
        session,
        [{"b_id": r.id, "b_status": r.status, "b_error": r.error, "b_at": r.processed_at} for r in raws],
    )


class LeaseLost(Exception):
    """Raised inside a transaction to roll it back: another worker owns the job now."""


class InboundProcessor:
    def __init__(
        self,
        db: Database,
        adapters: AdapterRegistry,
        fanout: Fanout,
        clock: Clock,
        worker_id: str,
        *,
        lease: timedelta = timedelta(seconds=60),
        max_attempts: int = 10,
    ) -> None:
        self.db = db
        self.adapters = adapters
        self.fanout = fanout
        self.clock = clock
        self.worker_id = worker_id
        self.lease = lease
        self.max_attempts = max_attempts

    async def handle(self, item: QueueItem) -> None:
        await self.handle_batch([item])

    async def handle_batch(self, items: list[QueueItem]) -> None:
        """Items all belong to one tenant (the fair scheduler groups them)."""
        ids = [i.job_id for i in items]
        if self.db.dialect == "sqlite":
            # One writer at a time: the claim shares the batch's transaction (one commit less per
            # batch), and is no statement of its own: the batch reads its claimable jobs and
            # finishes them (JobStore.claimable_plain). Should the batch fail, it all rolls back
            # and the jobs are claimed on their own, so the attempt still counts.
            try:
                await self._process([], claim=ids)
            except LeaseLost:
                return
            except Exception as exc:  # noqa: BLE001 - handled as any failed batch, once claimed apart
                jobs = await self._claim(ids)
                if jobs:
                    await self._failed(jobs, exc)
            return
        jobs = await self._claim(ids)
        if not jobs:
            return
        try:
            await self._process(jobs)
        except LeaseLost:
            log.info("inbound batch of %d was taken over by another worker; rolled back", len(jobs))
        except Exception as exc:  # noqa: BLE001 - logged and retried by _failed
            await self._failed(jobs, exc)

    async def _claim(self, ids: list[str]) -> list[ClaimedJob]:
        now = self.clock()
        async with self.db.transaction() as session:
            jobs = JobStore(session)
            await jobs.make_inbound_jobs(ids, now)  # the ingest stored their raw events alone
            claimed = await jobs.claim_plain(ids, self.worker_id, now, self.lease)
        return sorted(claimed, key=lambda job: job.id)  # ULIDs: the order they were received in

    async def _failed(self, jobs: list[ClaimedJob], exc: Exception) -> None:
        """A batch failed (and rolled back): retry a lone event later, or the batch's events one
        by one, so one bad event cannot hold up the others."""
        if len(jobs) == 1 and isinstance(exc, StatusTooEarly):
            await self._retry(jobs[0], str(exc))
            return
        if len(jobs) == 1:
            log.error("inbound job %s failed", jobs[0].id, exc_info=exc)
            await self._retry(jobs[0], "processing failed; see the logs")
            return
        log.warning("inbound batch of %d failed; retrying its events one by one", len(jobs))
        for job in jobs:
            try:
                await self._process([job])
            except LeaseLost:
                continue
            except StatusTooEarly as too_early:
                await self._retry(job, str(too_early))
            except Exception as failure:
                log.exception("inbound job %s failed", job.id)
                await self._retry(job, f"{type(failure).__name__}: {failure}"[:2000])

    async def _process(self, jobs: list[ClaimedJob], claim: list[str] | None = None) -> None:
        """Process claimed `jobs`; with `claim`, claim the jobs of these ids first, in the same
        transaction."""
        now = self.clock()
        async with self.db.transaction() as session:
            if claim:
                # SQLite: the claim and the finish share this transaction (see claimable_plain),
                # and so does making the jobs (the ingest stored their raw events alone).
                await JobStore(session).make_inbound_jobs(claim, now)
                claimed = await JobStore(session).claimable_plain(claim, now)
                jobs = sorted(claimed, key=lambda job: job.id)  # ULIDs: the order received in
                if not jobs:
                    return
            tenant_id = jobs[0].tenant_id
            # The tenant's sequence lock first: it orders this tenant's processing across
            # worker processes and keeps one lock order everywhere (see EventLog.lock).
            await EventLog(session, tenant_id).lock()
            store = JobStore(session)
            raws = await _load_raws(session, tenant_id, [j.subject_id for j in jobs])
            parsed = [
                (raw, self._parse(raw, now))
                for raw in (raws.get(job.subject_id) for job in jobs)
                if raw is not None
            ]
            # The contacts, conversations and messages the batch will look up, in a few queries.
            lookups = await load_lookups(
                session,
                tenant_id,
                ((raw.integration_id, event) for raw, events in parsed for event in events or ()),
            )
            repo = ConversationRepository(session, tenant_id, lookups)
            touched: set[str] = set()
            new_events: list[NewEvent] = []
            received: dict[str, int] = {}
            for raw, provider_events in parsed:
                if provider_events is not None:
                    applier = InboundApplier(
                        session, tenant_id, raw.integration_id, raw.kind, now, repo=repo, touched=touched
                    )
                    new_events.extend(await self._apply(applier, raw, provider_events, now, received))
            await repo.insert_staged()
            await repo.touch_conversations(touched, now)
            await _save_raw_outcomes(session, [raw for raw, _ in parsed])
            stored = await EventLog(session, tenant_id).append(new_events, now)
            integrations = IntegrationRepository(session, tenant_id)
            for integration_id, count in received.items():
                await integrations.count_traffic(integration_id, received=count, at=now)
            pending = await self.fanout.in_transaction(session, tenant_id, stored, now)
            ids = [job.id for job in jobs]
            if claim:
                finished = await store.finish_claimable(ids, self.worker_id, now)
            else:
                finished = await store.finish_many(ids, self.worker_id, now)
            if finished != len(jobs):
                raise LeaseLost
        await self.fanout.after_commit(pending)

    def _parse(self, raw: _Raw, now: datetime) -> list[ProviderEvent] | None:
        """The raw event's provider events; None (and the raw event marked) when it cannot be parsed."""
        adapter = self.adapters.get(raw.kind)
        try:
            return adapter.parse_inbound(raw.body, raw.headers)
        except (InvalidInput, ValueError, KeyError, TypeError) as exc:
            raw.processed_at = now
            raw.status = "parse_failed"
            raw.error = (exc.message if isinstance(exc, InvalidInput) else f"{type(exc).__name__}: {exc}")[
                :2000
            ]
            log.warning("raw event %s could not be parsed: %s", raw.id, raw.error)
            return None

    async def _apply(
        self,
        applier: InboundApplier,
        raw: _Raw,
        provider_events: list[ProviderEvent],
        now: datetime,
        received: dict[str, int],
    ) -> list[NewEvent]:
        events: list[NewEvent] = []
        for index, event in enumerate(provider_events):
            try:
                events.extend(await applier.apply(event, f"raw:{raw.id}:{index}"))
            except StatusTooEarly:
                if now - raw.received_at < STATUS_GRACE:
                    raise  # the batch rolls back; this event is retried with backoff
                log.info("raw event %s reports on a message we never sent; ignored", raw.id)
        # Set together at the end: one UPDATE of the raw event, not one per flush on the way.
        raw.processed_at = now
        raw.status = "processed" if events or applier.received else "ignored"
        raw.error = None
        if applier.received:
            received[raw.integration_id] = received.get(raw.integration_id, 0) + applier.received
        return events

    async def _retry(self, job: ClaimedJob, error: str) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            jobs = JobStore(session)
            held = await jobs.claimed(job.id, self.worker_id)
            if held is None:
                return
            if held.attempts >= self.max_attempts:
                await jobs.finish(held, self.worker_id, now, status="dead", error=error)
                raw = await session.get(RawEvent, held.subject_id)
                if raw is not None:
                    raw.status = "failed"
                    raw.error = error
                log.error("inbound job %s gave up after %d attempts", held.id, held.attempts)
                return
            delay = min(300.0, 2.0**held.attempts)
            await jobs.retry_later(held, self.worker_id, now + timedelta(seconds=delay), error)
