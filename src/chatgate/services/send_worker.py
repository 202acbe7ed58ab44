"""The send worker: rate limits, circuit breaker, the provider call, and the status it leaves.

Per job: claim → breaker and bucket checks (waiting for a budget is a reschedule, not a
failed attempt) → adapter.send → record the outcome with the job's completion in one
transaction. Transient errors retry with exponential backoff and jitter; permanent ones fail
the message at once with the provider's reason; a provider's retry-after pauses only the
bucket it concerns. The crash window: a process killed after the provider accepted a message
and before its commit re-sends it when the lease expires (providers have no idempotency keys).
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

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
from chatgate.providers.base import OutboundMessage, SendResult
from chatgate.providers.registry import AdapterRegistry
from chatgate.ratelimit.base import RateLimiter
from chatgate.ratelimit.pauses import BucketPauses
from chatgate.services.fanout import Fanout, PendingFanout
from chatgate.services.inbound_apply import apply_status
from chatgate.services.inbound_processor import LeaseLost
from chatgate.services.integrations import IntegrationService, status_changed_event
from chatgate.services.provider_context import ProviderContexts
from chatgate.store.db import Database
from chatgate.store.models import Integration, Job, Message
from chatgate.store.repositories.conversations import ConversationRepository
from chatgate.store.repositories.events import EventLog, NewEvent
from chatgate.store.repositories.integrations import IntegrationRepository
from chatgate.store.repositories.jobs import JobStore
from chatgate.workers.breaker import CircuitBreakers
from chatgate.workers.queue import QueueItem

log = logging.getLogger(__name__)


def backoff(attempt: int, *, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential backoff with full jitter in [delay/2, delay]."""
    delay: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security


class SendWorker:
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
        self.clock = clock
        self.worker_id = worker_id
        self.lease = lease
        self.max_attempts = max_attempts

    async def handle(self, item: QueueItem) -> None:
        async with self.db.transaction() as session:
            job = await JobStore(session).claim(item.job_id, self.worker_id, self.clock(), self.lease)
        if job is None:
            return
        try:
            await self._send(job)
        except LeaseLost:
            log.info("send job %s was taken over by another worker", job.id)
        except Exception as exc:
            log.exception("send job %s crashed", job.id)
            error = f"{type(exc).__name__}: {exc}"[:2000]
            if job.attempts >= self.max_attempts:
                await self._give_up(job, error)
            else:
                await self._reschedule(job, backoff(job.attempts), error, count=True)

    async def _give_up(self, job: Job, error: str) -> None:
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

    async def _send(self, job: Job) -> None:
        async with self.db.sessions() as session:
            repo = ConversationRepository(session, job.tenant_id)
            message = await repo.get_message(job.subject_id)
            conversation = await repo.get_conversation(message.conversation_id)
            integration = await IntegrationRepository(session, job.tenant_id).get(message.integration_id)
        provider = integration.kind
        if MessageStatus(message.status) != MessageStatus.QUEUED:
            await self._finish(
                job, None, provider
            )  # already sent by an earlier attempt that lost its lease late
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
            await self._reschedule(job, wait, "circuit open: the provider keeps failing", count=False)
            return
        adapter = self.adapters.get(integration.kind)
        context = await self.contexts.for_integration(integration)
        options = dict(message.send_options or {})
        outbound = OutboundMessage(
            message_id=message.id,
            recipient=conversation.external_id,
            text=message.text,
            attachments=list(message.attachments),
            reply_to_provider_id=message.reply_to_provider_id,
            buttons=list(message.buttons),
            template=options.pop("template", None),
            options=options,
        )
        buckets = adapter.send_buckets(outbound, context)
        for bucket in buckets:
            paused = await self.pauses.remaining(bucket.key)
            if paused > 0:
                await self._reschedule(
                    job, paused, f"bucket {bucket.key} paused by the provider", count=False
                )
                return
        for bucket in buckets:
            decision = await self.limiter.hit(bucket.key, bucket.limit)
            if not decision.allowed:
                await self._reschedule(job, decision.retry_after, None, count=False)
                return
        try:
            result = await adapter.send(outbound, context)
        except RunsElsewhere as exc:
            # Not a failure: another worker owns the account; come back soon, maybe there.
            await self._reschedule(job, 1.0, exc.message, count=False)
        except ProviderRateLimited as exc:
            target = str(exc.details.get("bucket") or (buckets[-1].key if buckets else integration.id))
            await self.pauses.pause(target, exc.retry_after)
            await self._reschedule(job, exc.retry_after, exc.message, count=False)
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
                await self._reschedule(job, backoff(job.attempts), exc.message, count=True)
        else:
            self.breakers.success(integration.id)
            await self._finish(job, (message, result), provider)

    async def _finish(self, job: Job, sent: tuple[Message, SendResult] | None, provider: str) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            await EventLog(session, job.tenant_id).lock()
            events: list[NewEvent] = []
            if sent is not None:
                repo = ConversationRepository(session, job.tenant_id)
                message = await repo.get_message(sent[0].id)
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
        job: Job,
        message: Message,
        provider: str,
        code: str,
        reason: str,
        *,
        needs_reauth: Integration | None = None,
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

    async def _reschedule(self, job: Job, delay: float, error: str | None, *, count: bool) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            run_after = now + timedelta(seconds=max(0.05, delay))
            await JobStore(session).retry_later(job, self.worker_id, run_after, error, count_attempt=count)

    async def _log(
        self, session: AsyncSession, tenant_id: str, events: list[NewEvent], now: datetime
    ) -> PendingFanout:
        stored = await EventLog(session, tenant_id).append(events, now)
        return await self.fanout.in_transaction(session, tenant_id, stored, now)
