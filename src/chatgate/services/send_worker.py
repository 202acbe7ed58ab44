"""The send worker: rate limits, circuit breaker, the provider call, and the status it leaves.

Per job: claim → breaker and bucket checks (waiting for a budget is a reschedule, not a
failed attempt) → adapter.send → record the outcome with the job's completion in one
transaction. Claims and outcomes of sends running at the same time share their
transactions (group commit, `workers/batcher.py`), so the database work per send is a small
share of a few statements. Transient errors retry with exponential backoff and jitter; permanent ones fail
the message at once with the provider's reason; a provider's retry-after pauses only the
bucket it concerns. The crash window: a process killed after the provider accepted a message
and before its commit re-sends it when the lease expires (providers have no idempotency keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.clock import Clock
from chatgate.domain.errors import (
    AuthRevoked,
    PermanentProviderError,
    ProviderRateLimited,
    RecipientInvalid,
    RunsElsewhere,
    TransientProviderError,
)
from chatgate.domain.integrations import IntegrationStatus
from chatgate.domain.messages import MessageStatus
from chatgate.observability.metrics import SendMetrics
from chatgate.providers.base import Bucket, IntegrationContext, OutboundMessage, ProviderAdapter, SendResult
from chatgate.providers.registry import AdapterRegistry
from chatgate.ratelimit.base import RateLimiter, within_budget
from chatgate.ratelimit.pauses import BucketPauses
from chatgate.services.fanout import Fanout, PendingFanout
from chatgate.services.inbound_apply import apply_status
from chatgate.services.inbound_processor import LeaseLost
from chatgate.services.integrations import IntegrationService, status_changed_event
from chatgate.services.provider_context import ProviderContexts
from chatgate.services.send_contexts import SendContexts
from chatgate.services.send_pacing import SendPacer
from chatgate.services.send_store import IntegrationRow, MessageRow, SendStore, SentRecord
from chatgate.store.db import Database
from chatgate.store.repositories.conversations import ConversationRepository
from chatgate.store.repositories.events import EventLog, NewEvent
from chatgate.store.repositories.integrations import IntegrationRepository
from chatgate.store.repositories.jobs import ClaimedJob, JobStore, Reschedule
from chatgate.workers.batcher import GroupBatcher
from chatgate.workers.breaker import CircuitBreakers
from chatgate.workers.queue import QueueItem

log = logging.getLogger(__name__)


def backoff(attempt: int, *, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential backoff with full jitter in [delay/2, delay]."""
    delay: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PreparedSend:
    """A claimed send job with everything its attempt needs, loaded in its claim's batch."""

    job: ClaimedJob
    message: MessageRow | None  # None: the message is gone (or not this tenant's)
    integration: IntegrationRow | None
    context: IntegrationContext | None
    claimed_at: float  # event-loop time of the claim (the lease runs from here)
    error: Exception | None = None  # building the context failed (e.g. undecryptable credentials)

    @property
    def id(self) -> str:
        return self.job.id


@dataclass(frozen=True, slots=True)
class _Attempt:
    adapter: ProviderAdapter
    outbound: OutboundMessage
    context: IntegrationContext
    buckets: list[Bucket]


@dataclass(frozen=True, slots=True)
class _Sent:
    send: PreparedSend
    result: SendResult
    provider: str


@dataclass(frozen=True, slots=True)
class _Later:
    send: PreparedSend
    delay: float
    error: str | None
    count: bool


_Outcome = _Sent | _Later


class _NoLock(contextlib.AbstractAsyncContextManager[None]):
    async def __aexit__(self, *_exc: object) -> None:
        return None


class _BatchLeaseLost(Exception):
    """A job of the batch is no longer ours: the batch rolls back and is recorded job by job."""


class SendWorker:
    """Sends one message per `handle` call; the database work of many sends is shared.

    The send scheduler calls `prepare` with a batch of queue items ahead of its executors: one
    transaction claims them, then two queries load their messages, recipients and
    integrations. Executors call `handle` per item: breaker, pauses and budgets, the provider
    call, and the outcome handed to a group commit with the outcomes of other sends (`sent`
    statuses and events, job completions, reschedules). `handle` with an item that was not
    prepared (a direct call) claims it through a group commit of its own. Rare outcomes
    (permanent failures, give-ups, a moved chat) commit on their own.
    """

    def __init__(
        self,
        db: Database,
        adapters: AdapterRegistry,
        integrations: IntegrationService,
        limiter: RateLimiter,
        pauses: BucketPauses,
        breakers: CircuitBreakers,
        fanout: Fanout,
        contexts: ProviderContexts,
        clock: Clock,
        worker_id: str,
        *,
        lease: timedelta = timedelta(seconds=60),
        max_attempts: int = 8,
        metrics: SendMetrics | None = None,
        max_batch: int = 1024,
        max_unrecorded: int = 4096,
        max_in_flight: int = 32,
        pacer: SendPacer | None = None,
    ) -> None:
        self.metrics = metrics
        self.db = db
        self.adapters = adapters
        self.integrations = integrations
        self.limiter = limiter
        self.pauses = pauses
        self.breakers = breakers
        self.fanout = fanout
        self.contexts = contexts
        self.send_contexts = SendContexts(integrations, contexts)
        self.clock = clock
        self.worker_id = worker_id
        self.lease = lease
        self.max_attempts = max_attempts
        self.claims: GroupBatcher[str, PreparedSend | None] = GroupBatcher(
            "send-claims", self._claim_batch, max_batch=max_batch
        )
        self.records: GroupBatcher[_Outcome, None] = GroupBatcher(
            "send-records", self._record_batch, max_batch=max_batch
        )
        self.pacer = pacer or SendPacer(limiter, max_wait=min(20.0, lease.total_seconds() / 3))
        self._prepared: dict[str, PreparedSend] = {}
        # SQLite: claims and records take turns; two writers in one process would only make
        # each other wait in SQLite's busy handler. Other databases run them side by side.
        self._writing: contextlib.AbstractAsyncContextManager[object] = (
            asyncio.Lock() if db.dialect == "sqlite" else _NoLock()
        )
        self._unrecorded = asyncio.Semaphore(max_unrecorded)
        # Provider calls at once, from executors and from sends released by a bucket's line
        # together: the scheduler's concurrency, so paced sends cannot crowd out other tenants.
        self._calls = asyncio.Semaphore(max_in_flight)

    async def prepare(self, items: list[QueueItem]) -> list[QueueItem]:
        """Claim and load many jobs in one transaction, ahead of `handle` (the scheduler's
        prepare step); returns the items now held by this worker."""
        prepared = await self._claim_batch([item.job_id for item in items])
        ready: list[QueueItem] = []
        for item, send in zip(items, prepared, strict=True):
            if send is not None:
                self._prepared[item.job_id] = send
                ready.append(item)
        return ready

    async def handle(self, item: QueueItem) -> None:
        prepared = self._prepared.pop(item.job_id, None)
        # Prepared by the scheduler: the executor moves on once the provider answered and the
        # outcome is queued for the next group commit. Called directly: wait for the commit.
        detached = prepared is not None
        if prepared is None:
            prepared = await self.claims.submit(item.job_id)
        else:
            prepared = await self._still_ours(prepared)
        if prepared is None:
            return
        await self._guarded(prepared, self._send(prepared, detached=detached))

    async def _still_ours(self, prepared: PreparedSend) -> PreparedSend | None:
        """A send prepared long ago (slow provider, long line) renews its lease before it goes."""
        loop = asyncio.get_running_loop()
        if loop.time() - prepared.claimed_at < self.lease.total_seconds() / 2:
            return prepared
        renewed_at = loop.time()
        async with self.db.transaction() as session:
            if not await JobStore(session).renew(prepared.id, self.worker_id, self.clock(), self.lease):
                log.info("send job %s waited past its lease and was taken over", prepared.id)
                return None
        return replace(prepared, claimed_at=renewed_at)

    async def _guarded(self, prepared: PreparedSend, attempt: Awaitable[None]) -> None:
        try:
            await attempt
        except LeaseLost:
            log.info("send job %s was taken over by another worker", prepared.id)
        except Exception as exc:
            log.exception("send job %s crashed", prepared.id)
            error = f"{type(exc).__name__}: {exc}"[:2000]
            if prepared.job.attempts >= self.max_attempts:
                await self._give_up(prepared.job, error)
            else:
                await self._reschedule(prepared.job, backoff(prepared.job.attempts), error, count=True)

    async def aclose(self) -> None:
        """Stop the paced sends and commit the outcomes still queued (before the database closes)."""
        await self.pacer.aclose()
        await self.records.idle()
        await self.claims.idle()

    # ------------------------------------------------------------------ claiming, in batches

    async def _claim_batch(self, job_ids: list[str]) -> list[PreparedSend | None]:
        now = self.clock()
        started = asyncio.get_running_loop().time()
        async with self._writing, self.db.transaction() as session:
            claimed = await JobStore(session).claim_plain(
                list(dict.fromkeys(job_ids)), self.worker_id, now, self.lease
            )
        if not claimed:
            return [None] * len(job_ids)
        # Read after the claim's commit, outside the write lock: the leases keep these rows
        # ours, and the next commit need not wait for the reading.
        async with self.db.sessions() as session:
            store = SendStore(session)
            messages = await store.messages(j.subject_id for j in claimed)
            integrations = await store.integrations(m.integration_id for m in messages.values())
        contexts: dict[str, IntegrationContext] = {}
        errors: dict[str, Exception] = {}
        for row in integrations.values():
            try:
                contexts[row.id] = await self.send_contexts.build(row)
            except Exception as exc:  # noqa: BLE001 - fails that integration's sends, not the batch
                errors[row.id] = exc
        by_job: dict[str, PreparedSend] = {}
        for job in claimed:
            message = messages.get(job.subject_id)
            if message is None or message.tenant_id != job.tenant_id:
                by_job[job.id] = PreparedSend(job, None, None, None, started)
                continue
            integration = integrations.get(message.integration_id)
            context = contexts.get(message.integration_id)
            error = errors.get(message.integration_id)
            by_job[job.id] = PreparedSend(job, message, integration, context, started, error)
        # each job goes to one caller (a duplicate queue delivery in the same batch gets None)
        return [by_job.pop(job_id, None) for job_id in job_ids]

    # ------------------------------------------------------------------ one attempt

    async def _send(self, prepared: PreparedSend, *, detached: bool) -> None:
        if prepared.error is not None:
            raise prepared.error  # retried with backoff like any crash (`_guarded`)
        job, message = prepared.job, prepared.message
        integration, context = prepared.integration, prepared.context
        if message is None or integration is None or context is None:
            async with self.db.transaction() as session:
                await JobStore(session).finish(
                    job, self.worker_id, self.clock(), status="dead", error="the message no longer exists"
                )
            return
        provider = integration.kind
        if MessageStatus(message.status) != MessageStatus.QUEUED:
            # already sent by an earlier attempt that lost its lease late
            await self._finish(job, None, provider)
            return
        if IntegrationStatus(integration.status) in (
            IntegrationStatus.DISABLED,
            IntegrationStatus.NEEDS_REAUTH,
        ):
            await self._fail(
                job, message, provider, "integration_unavailable", f"the integration is {integration.status}"
            )
            return
        wait = self.breakers.wait_time(integration.id)
        if wait > 0:
            await self._later(
                prepared, wait, "circuit open: the provider keeps failing", count=False, detached=detached
            )
            return
        adapter = self.adapters.get(integration.kind)
        options = dict(message.send_options or {})
        outbound = OutboundMessage(
            message_id=message.id,
            recipient=message.recipient,
            text=message.text,
            attachments=list(message.attachments),
            reply_to_provider_id=message.reply_to_provider_id,
            buttons=list(message.buttons),
            template=options.pop("template", None),
            options=options,
        )
        buckets = adapter.send_buckets(outbound, context)
        await self._spend_and_send(
            prepared, _Attempt(adapter, outbound, context, buckets), 0, detached=detached
        )

    async def _spend_and_send(
        self, prepared: PreparedSend, attempt: _Attempt, start: int, *, detached: bool
    ) -> None:
        """Check the buckets' pauses, spend the budgets of `attempt.buckets[start:]`, then call
        the provider.

        A refused budget puts the send in that bucket's line (`SendPacer`), which resumes it
        here once the budget allows, with the buckets after that one; a full line reschedules
        it through the database.
        """
        assert prepared.message is not None
        assert prepared.integration is not None
        job, message, integration = prepared.job, prepared.message, prepared.integration
        provider = integration.kind
        adapter, outbound, context, buckets = (
            attempt.adapter,
            attempt.outbound,
            attempt.context,
            attempt.buckets,
        )
        for bucket in buckets:  # again after a wait in a line: a 429 may have paused one meanwhile
            paused = await self.pauses.remaining(bucket.key)
            if paused > 0:
                reason = f"bucket {bucket.key} paused by the provider"
                await self._later(prepared, paused, reason, count=False, detached=detached)
                return
        for index in range(start, len(buckets)):
            bucket = buckets[index]
            limit = within_budget(bucket.limit)
            retry_after = 0.0
            if not self.pacer.has_line(bucket.key):
                decision = await self.limiter.hit(bucket.key, limit)
                if decision.allowed:
                    continue
                retry_after = decision.retry_after
            if self.pacer.wait(bucket.key, limit, partial(self._resume, prepared, attempt, index + 1)):
                return
            delay = max(retry_after, self.pacer.backlog_seconds(bucket.key))
            await self._later(prepared, delay, None, count=False, detached=detached)
            return
        try:
            async with self._calls:
                result = await adapter.send(outbound, context)
        except RunsElsewhere as exc:
            # Not a failure: another worker owns the account; come back soon, maybe there.
            await self._later(prepared, 1.0, exc.message, count=False, detached=detached)
        except ProviderRateLimited as exc:
            target = str(exc.details.get("bucket") or (buckets[-1].key if buckets else integration.id))
            await self.pauses.pause(target, exc.retry_after)
            await self._later(prepared, exc.retry_after, exc.message, count=False, detached=detached)
        except AuthRevoked as exc:
            code = str(exc.details.get("provider_code") or exc.code)
            await self._fail(job, message, provider, code, exc.message, needs_reauth=integration)
        except RecipientInvalid as exc:
            await self._fail(
                job,
                message,
                provider,
                str(exc.details.get("provider_code") or exc.code),
                exc.message,
                unreachable=bool(exc.details.get("unreachable")),
            )
        except PermanentProviderError as exc:
            await self._fail(
                job, message, provider, str(exc.details.get("provider_code") or exc.code), exc.message
            )
        except TransientProviderError as exc:
            self.breakers.failure(integration.id)
            if job.attempts >= self.max_attempts:
                await self._fail(
                    job, message, provider, exc.code, f"gave up after {job.attempts} attempts: {exc.message}"
                )
            else:
                await self._later(prepared, backoff(job.attempts), exc.message, count=True, detached=detached)
        else:
            self.breakers.success(integration.id)
            if result.detail.get("recipient_moved_to"):
                await self._finish(job, (message.id, result), provider)
            else:
                await self._record(_Sent(prepared, result, provider), detached=detached)

    async def _resume(self, prepared: PreparedSend, attempt: _Attempt, start: int) -> None:
        """A send released by its bucket's line (in its own task, not an executor)."""
        waited = asyncio.get_running_loop().time() - prepared.claimed_at
        if waited > self.lease.total_seconds() * 0.75:  # too close to losing the lease: go round again
            await self._guarded(
                prepared,
                self._later(
                    prepared, 0.05, "waited too long for a rate-limit budget", count=False, detached=False
                ),
            )
            return
        await self._guarded(prepared, self._spend_and_send(prepared, attempt, start, detached=False))

    async def _later(
        self, prepared: PreparedSend, delay: float, error: str | None, *, count: bool, detached: bool
    ) -> None:
        await self._record(_Later(prepared, delay, error, count), detached=detached)

    async def _record(self, outcome: _Outcome, *, detached: bool) -> None:
        """Commit the outcome with others. An executor (`detached`) waits for that commit when it
        can start at once, as a lone send always did; while another commit is running it hands
        the outcome to the next one and moves on, so commit time never limits the sends in flight."""
        if not detached or not self.records.running:
            await self.records.submit(outcome)
            return
        await self._unrecorded.acquire()  # back-pressure: a bounded number of outcomes in flight
        self.records.enqueue(outcome).add_done_callback(partial(self._recorded, outcome))

    def _recorded(self, outcome: _Outcome, future: asyncio.Future[None]) -> None:
        self._unrecorded.release()
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, LeaseLost):
            log.info("send job %s was taken over by another worker", outcome.send.id)
        elif error is not None:
            log.warning(
                "recording send job %s failed (%s: %s); it runs again after its lease",
                outcome.send.id,
                type(error).__name__,
                error,
            )

    # ------------------------------------------------------------------ recording, in batches

    async def _record_batch(self, outcomes: list[_Outcome]) -> list[BaseException | None]:
        try:
            pending = await self._record_together(outcomes)
        except Exception as exc:  # noqa: BLE001 - each outcome is then recorded (or fails) on its own
            if not isinstance(exc, _BatchLeaseLost):
                log.warning("recording %d send outcomes together failed (%s); one by one", len(outcomes), exc)
            return [await self._record_alone(outcome) for outcome in outcomes]
        for item in pending:
            await self.fanout.after_commit(item)
        if self.metrics is not None:
            for outcome in outcomes:
                if isinstance(outcome, _Sent):
                    self.metrics.record_sent(outcome.provider)
        return [None] * len(outcomes)

    async def _record_together(self, outcomes: list[_Outcome]) -> list[PendingFanout]:
        now = self.clock()
        sent = [o for o in outcomes if isinstance(o, _Sent)]
        later = [o for o in outcomes if isinstance(o, _Later)]
        pending: list[PendingFanout] = []
        async with self._writing, self.db.transaction() as session:
            tenants = sorted({o.send.job.tenant_id for o in sent})
            if self.db.dialect != "sqlite":  # SQLite: the first write locks the whole database
                for tenant_id in tenants:  # the same lock order as every event-writing transaction
                    await EventLog(session, tenant_id).lock()
            jobs = JobStore(session)
            if sent:
                held = await jobs.finish_many([o.send.id for o in sent], self.worker_id, now)
                if held != len(sent):
                    raise _BatchLeaseLost
            await jobs.retry_many(
                [
                    Reschedule(o.send.id, now + timedelta(seconds=max(0.05, o.delay)), o.error, o.count)
                    for o in later
                ],
                self.worker_id,
            )
            records = [
                SentRecord(o.send.job.tenant_id, o.send.message, o.result.provider_message_id, o.provider)
                for o in sent
                if o.send.message is not None
            ]
            store = SendStore(session, multi_rowcount=self.db.engine.dialect.supports_sane_multi_rowcount)
            events = await store.mark_sent(records, now)
            if events is None:
                raise _BatchLeaseLost  # a message moved meanwhile: roll back, record one by one
            for tenant_id in tenants:
                # Statuses that just moved forward are new events: no dedupe query needed.
                log_of = EventLog(session, tenant_id)
                stored = await log_of.append_new(events.get(tenant_id, []), now)
                if stored is None:
                    stored = await log_of.append(events.get(tenant_id, []), now)
                pending.append(await self.fanout.in_transaction(session, tenant_id, stored, now))
            traffic: Counter[tuple[str, str]] = Counter(
                (r.tenant_id, r.message.integration_id) for r in records
            )
            for (tenant_id, integration_id), count in sorted(traffic.items()):
                await IntegrationRepository(session, tenant_id).count_traffic(
                    integration_id, sent=count, at=now
                )
        return pending

    async def _record_alone(self, outcome: _Outcome) -> BaseException | None:
        try:
            if isinstance(outcome, _Sent):
                assert outcome.send.message is not None
                await self._finish(
                    outcome.send.job, (outcome.send.message.id, outcome.result), outcome.provider
                )
            else:
                await self._reschedule(outcome.send.job, outcome.delay, outcome.error, count=outcome.count)
        except Exception as exc:  # noqa: BLE001 - the error goes to this outcome's caller
            return exc
        return None

    # ------------------------------------------------------------------ one job at a time (rare outcomes)

    async def _give_up(self, job: ClaimedJob, error: str) -> None:
        """A send that keeps crashing (not a provider answer) ends as failed, not retried forever."""
        async with self.db.sessions() as session:
            message = await ConversationRepository(session, job.tenant_id).get_message(job.subject_id)
            integration = await IntegrationRepository(session, job.tenant_id).get(message.integration_id)
        await self._fail(
            job,
            message,
            integration.kind,
            "internal_error",
            f"gave up after {job.attempts} attempts: {error}",
        )

    async def _finish(self, job: ClaimedJob, sent: tuple[str, SendResult] | None, provider: str) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            await EventLog(session, job.tenant_id).lock()
            events: list[NewEvent] = []
            if sent is not None:
                repo = ConversationRepository(session, job.tenant_id)
                message = await repo.get_message(sent[0])
                message.provider_message_id = sent[1].provider_message_id
                moved_to = sent[1].detail.get("recipient_moved_to")
                if moved_to:  # a Telegram group became a supergroup: later sends go there
                    await repo.move_conversation(message.conversation_id, str(moved_to))
                events = await apply_status(session, message, MessageStatus.SENT, now, None, None, provider)
                await IntegrationRepository(session, job.tenant_id).count_traffic(
                    message.integration_id, sent=1, at=now
                )
            pending = await self._log(session, job.tenant_id, events, now)
            if not await JobStore(session).finish(job, self.worker_id, now):
                raise LeaseLost
        await self.fanout.after_commit(pending)
        if sent is not None and self.metrics is not None:
            self.metrics.record_sent(provider)

    async def _fail(
        self,
        job: ClaimedJob,
        message: _Identified,
        provider: str,
        code: str,
        reason: str,
        *,
        needs_reauth: IntegrationRow | None = None,
        unreachable: bool = False,
    ) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            await EventLog(session, job.tenant_id).lock()
            repo = ConversationRepository(session, job.tenant_id)
            current = await repo.get_message(message.id)
            events = await apply_status(session, current, MessageStatus.FAILED, now, code, reason, provider)
            if unreachable and current.contact_id:
                await repo.mark_unreachable(current.contact_id, True, now)
            if needs_reauth is not None and needs_reauth.status != IntegrationStatus.NEEDS_REAUTH:
                changed, previous = await self.integrations.set_status_in(
                    session, job.tenant_id, needs_reauth.id, IntegrationStatus.NEEDS_REAUTH, reason
                )
                event = status_changed_event(changed, previous)
                if event is not None:
                    events.append(event)
            pending = await self._log(session, job.tenant_id, events, now)
            if not await JobStore(session).finish(job, self.worker_id, now, error=f"{code}: {reason}"[:2000]):
                raise LeaseLost
        await self.fanout.after_commit(pending)
        if self.metrics is not None:
            self.metrics.record_failed(provider, code)

    async def _reschedule(self, job: ClaimedJob, delay: float, error: str | None, *, count: bool) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            run_after = now + timedelta(seconds=max(0.05, delay))
            await JobStore(session).retry_later(job, self.worker_id, run_after, error, count_attempt=count)

    async def _log(
        self, session: AsyncSession, tenant_id: str, events: list[NewEvent], now: datetime
    ) -> PendingFanout:
        stored = await EventLog(session, tenant_id).append(events, now)
        return await self.fanout.in_transaction(session, tenant_id, stored, now)
