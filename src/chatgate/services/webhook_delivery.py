"""The delivery worker: sign, POST (SSRF-safe), record the attempt, schedule the next one.

Every delivery and every attempt is a row, so retries survive restarts: the job's run_after
carries the next attempt time, and the sweeper dispatches it when due. `webhook-id` is the
event id, stable across retries, so receivers can deduplicate.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.delivery import signing
from chatgate.delivery.http import DeliveryNetworkError, HttpResult, SafeHttpClient
from chatgate.delivery.payloads import render
from chatgate.delivery.schedule import next_delay
from chatgate.domain.clock import Clock
from chatgate.domain.errors import ChatgateError
from chatgate.domain.events import EndpointDisabledData, EventType
from chatgate.observability.metrics import DeliveryMetrics
from chatgate.ratelimit.base import RateLimiter, paced
from chatgate.security.keyring.envelope import SecretBox
from chatgate.services.fanout import Fanout, PendingFanout
from chatgate.services.inbound_processor import LeaseLost
from chatgate.services.secret_cache import SecretCache
from chatgate.store.db import Database
from chatgate.store.models import Event, Job, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from chatgate.store.repositories.events import EventLog, NewEvent
from chatgate.store.repositories.jobs import ClaimedJob, JobStore, Reschedule
from chatgate.store.repositories.sealed import endpoint_secret_aad
from chatgate.store.repositories.webhooks import WebhookRepository
from chatgate.workers.batcher import GroupBatcher
from chatgate.workers.queue import QueueItem

log = logging.getLogger(__name__)
_BODY_CAP = 4096


@dataclass(frozen=True)
class DeliveryPolicy:
    schedule: tuple[float, ...]
    disable_after: timedelta = timedelta(days=5)


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A claimed delivery job with what it needs, read in the claim batch's one query each."""

    job: ClaimedJob
    delivery: WebhookDelivery | None
    endpoint: WebhookEndpoint | None
    event: Event | None


@dataclass(frozen=True, slots=True)
class _Close:
    job: ClaimedJob
    delivery_id: str | None = None
    outcome: tuple[str, int | None, str | None] | None = None  # delivery status, code, error


@dataclass(frozen=True, slots=True)
class _Later:
    job: ClaimedJob
    run_after: datetime  # from the moment of the decision, not of its recording
    error: str | None
    count: bool = True


@dataclass(frozen=True, slots=True)
class _Attempted:
    job: ClaimedJob
    delivery_id: str
    endpoint: WebhookEndpoint
    attempted_at: datetime  # retries are scheduled from here, however late the recording
    shown_headers: dict[str, str]
    result: HttpResult | None
    error: str | None
    elapsed: float


_Outcome = _Close | _Later | _Attempted


class DeliveryWorker:
    """Deliveries run concurrently, each on its own (a slow endpoint holds up nobody else),
    while their database work is grouped: claims that arrive together are made and loaded in
    one transaction, and outcomes that arrive together are recorded in one."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        http: SafeHttpClient,
        limiter: RateLimiter,
        fanout: Fanout,
        metrics: DeliveryMetrics,
        clock: Clock,
        worker_id: str,
        policy: DeliveryPolicy,
        *,
        lease: timedelta = timedelta(seconds=60),
        secret_ttl: float = 60.0,
    ) -> None:
        self.db = db
        self.box = box
        self.http = http
        self.limiter = limiter
        self.fanout = fanout
        self.metrics = metrics
        self.clock = clock
        self.worker_id = worker_id
        self.policy = policy
        self.lease = lease
        self._claims: GroupBatcher[str, _Loaded | None] = GroupBatcher("deliver-claims", self._claim_batch)
        self._records: GroupBatcher[_Outcome, None] = GroupBatcher("deliver-records", self._record_batch)
        self._secrets = SecretCache(secret_ttl)

    async def handle(self, item: QueueItem) -> None:
        loaded = await self._claims.submit(item.job_id)
        if loaded is None:
            return
        try:
            outcome = await self._attempt(loaded)
        except Exception as exc:
            log.exception("delivery job %s crashed", loaded.job.id)
            outcome = self._later(loaded.job, 30.0, f"{type(exc).__name__}: {exc}")
        try:
            await self._records.submit(outcome)
        except LeaseLost:
            log.info("delivery job %s was taken over", loaded.job.id)

    async def _claim_batch(self, job_ids: list[str]) -> list[_Loaded | None]:
        now = self.clock()
        async with self.db.transaction() as session:
            claimed = {
                c.id: c for c in await JobStore(session).claim_plain(job_ids, self.worker_id, now, self.lease)
            }
        deliveries: dict[str, WebhookDelivery] = {}
        endpoints: dict[str, WebhookEndpoint] = {}
        events: dict[int, Event] = {}
        if claimed:
            async with self.db.sessions() as session:
                deliveries = await _by_id(session, WebhookDelivery, {c.subject_id for c in claimed.values()})
                endpoints = await _by_id(
                    session, WebhookEndpoint, {d.endpoint_id for d in deliveries.values()}
                )
                events = await _by_id(session, Event, {d.event_row_id for d in deliveries.values()})
        loaded: list[_Loaded | None] = []
        for job_id in job_ids:
            job = claimed.pop(job_id, None)  # a job queued twice is delivered once
            if job is None:
                loaded.append(None)
                continue
            delivery = deliveries.get(job.subject_id)
            if delivery is None or delivery.tenant_id != job.tenant_id:
                loaded.append(_Loaded(job, None, None, None))
                continue
            loaded.append(
                _Loaded(job, delivery, endpoints.get(delivery.endpoint_id), events.get(delivery.event_row_id))
            )
        return loaded

    async def _attempt(self, loaded: _Loaded) -> _Outcome:
        job, delivery, endpoint, event = loaded.job, loaded.delivery, loaded.endpoint, loaded.event
        if delivery is None or event is None or delivery.status in ("succeeded", "skipped", "dead"):
            return _Close(job)
        if endpoint is None or not endpoint.enabled:
            reason = endpoint.disabled_reason if endpoint is not None else "deleted"
            return _Close(job, delivery.id, ("failed", None, f"endpoint disabled: {reason}"))
        if endpoint.ordering == "conversation" and await self._blocked(delivery):
            return self._later(job, 1.0, "waiting for an earlier event of this conversation", count=False)
        if endpoint.rate_limit_per_second:
            rate = endpoint.rate_limit_per_second
            decision = await self.limiter.hit(f"endpoint:{endpoint.id}", paced(rate))
            if not decision.allowed:
                return self._later(job, decision.retry_after, None, count=False)
        body = render(event, endpoint.format, endpoint.format_options)
        if body is None:
            return _Close(job, delivery.id, ("skipped", None, None))
        headers = await self._headers(endpoint, event, body)
        attempted_at = self.clock()
        started = time.perf_counter()
        result: HttpResult | None = None
        error: str | None = None
        try:
            result = await self.http.post(endpoint.url, body=body, headers=headers)
        except DeliveryNetworkError as exc:
            error = exc.message
        except ChatgateError as exc:  # UnsafeUrl: the target now resolves somewhere forbidden
            error = exc.message
        elapsed = time.perf_counter() - started
        self.metrics.attempted.labels(endpoint.id).inc()
        self.metrics.latency.labels(endpoint.id).observe(elapsed)
        shown = {
            k: v for k, v in headers.items() if k.lower() not in ("webhook-signature", "x-lovable-secret")
        }
        return _Attempted(job, delivery.id, endpoint, attempted_at, shown, result, error, elapsed)

    def _later(self, job: ClaimedJob, delay: float, error: str | None, *, count: bool = True) -> _Later:
        return _Later(job, self.clock() + timedelta(seconds=max(0.05, delay)), error, count)

    async def _blocked(self, delivery: WebhookDelivery) -> bool:
        async with self.db.sessions() as session:
            return await WebhookRepository(session, delivery.tenant_id).earlier_open_in_conversation(delivery)

    async def _headers(self, endpoint: WebhookEndpoint, event: Event, body: bytes) -> dict[str, str]:
        now = self.clock()
        secrets = [
            await self._open(endpoint, "secret_sealed", endpoint.secret_sealed),
        ]
        if (
            endpoint.previous_secret_sealed
            and endpoint.previous_secret_expires_at
            and endpoint.previous_secret_expires_at > now
        ):
            secrets.append(
                await self._open(endpoint, "previous_secret_sealed", endpoint.previous_secret_sealed)
            )
        headers = {str(k): str(v) for k, v in endpoint.custom_headers.items()}
        headers.update(signing.headers(secrets, event.event_id, int(now.timestamp()), body))
        headers["content-type"] = "application/json"
        headers["user-agent"] = "chatgate-webhooks/1"
        if endpoint.format == "lovable" and endpoint.format_secret_sealed:
            headers["X-Lovable-Secret"] = await self._open(
                endpoint, "format_secret_sealed", endpoint.format_secret_sealed
            )
        return headers

    async def _open(self, endpoint: WebhookEndpoint, column: str, sealed: str) -> str:
        # The sealed text is part of the key: a rotated secret is a different entry.
        key = (endpoint.tenant_id, endpoint.id, column, sealed)
        cached = self._secrets.get(key)
        if cached is not None:
            return cached
        opened = (
            await self.box.open(sealed, endpoint_secret_aad(column)(endpoint.tenant_id, endpoint.id))
        ).decode()
        self._secrets.put(key, opened)
        return opened

    async def _record_batch(self, outcomes: list[_Outcome]) -> list[BaseException | None]:
        now = self.clock()
        pendings: list[PendingFanout] = []
        async with self.db.transaction() as session:
            held = set(
                (
                    await session.execute(
                        select(Job.id).where(
                            Job.id.in_([o.job.id for o in outcomes]),
                            Job.status == "running",
                            Job.leased_by == self.worker_id,
                        )
                    )
                ).scalars()
            )
            mine = [o for o in outcomes if o.job.id in held]
            deliveries = await _by_id(
                session,
                WebhookDelivery,
                {o.delivery_id for o in mine if not isinstance(o, _Later) and o.delivery_id is not None},
            )
            endpoints = await _by_id(
                session, WebhookEndpoint, {o.endpoint.id for o in mine if isinstance(o, _Attempted)}
            )
            finished: list[str] = []
            later: list[Reschedule] = []
            new_events: dict[str, list[NewEvent]] = defaultdict(list)
            attempts: list[dict[str, object]] = []  # inserted together (one executemany)
            for outcome in mine:
                if isinstance(outcome, _Later):
                    later.append(Reschedule(outcome.job.id, outcome.run_after, outcome.error, outcome.count))
                    continue
                delivery = deliveries.get(outcome.delivery_id) if outcome.delivery_id else None
                if delivery is not None and delivery.tenant_id != outcome.job.tenant_id:
                    delivery = None  # never touch another tenant's row
                if isinstance(outcome, _Close):
                    if delivery is not None and outcome.outcome is not None:
                        delivery.status, delivery.last_status_code, delivery.last_error = outcome.outcome
                        delivery.finished_at = now
                    finished.append(outcome.job.id)
                    continue
                endpoint = endpoints.get(outcome.endpoint.id)
                if delivery is None or endpoint is None:
                    finished.append(outcome.job.id)  # deleted meanwhile: nothing left to record
                    continue
                retry = await self._apply_attempt(session, outcome, delivery, endpoint, new_events, attempts)
                if retry is None:
                    finished.append(outcome.job.id)
                else:
                    later.append(retry)
            if attempts:
                await session.execute(insert(WebhookAttempt), attempts)
            for tenant_id, events in new_events.items():
                stored = await EventLog(session, tenant_id).append(events, now)
                pendings.append(await self.fanout.in_transaction(session, tenant_id, stored, now))
            store = JobStore(session)
            await store.finish_many(finished, self.worker_id, now)
            await store.retry_many(later, self.worker_id)
        for pending in pendings:
            await self.fanout.after_commit(pending)
        return [None if o.job.id in held else LeaseLost() for o in outcomes]

    async def _apply_attempt(
        self,
        session: AsyncSession,
        outcome: _Attempted,
        current: WebhookDelivery,
        live_endpoint: WebhookEndpoint,
        new_events: dict[str, list[NewEvent]],
        attempts: list[dict[str, object]],
    ) -> Reschedule | None:
        """Record one attempt on its delivery and endpoint; the job's next run, or None when done."""
        now = outcome.attempted_at
        result = outcome.result
        status_code = result.status if result is not None else None
        endpoint_id = outcome.endpoint.id
        attempts.append(
            {
                "tenant_id": outcome.job.tenant_id,
                "delivery_id": current.id,
                "attempted_at": now,
                "url": outcome.endpoint.url,
                "request_headers": outcome.shown_headers,
                "response_status": status_code,
                "response_body": result.body[:_BODY_CAP].decode("utf-8", errors="replace")
                if result is not None
                else None,
                "duration_ms": round(outcome.elapsed * 1000, 2),
                "error": outcome.error,
            }
        )
        ok = status_code is not None and 200 <= status_code < 300
        current.attempts += 1
        current.last_status_code = status_code
        current.last_error = outcome.error or (None if ok else f"the endpoint answered {status_code}")
        if ok:
            current.status = "succeeded"
            current.finished_at = now
            current.next_attempt_at = None
            if live_endpoint.failing_since is not None:
                live_endpoint.failing_since = None
            self.metrics.succeeded.labels(endpoint_id).inc()
            return None
        self.metrics.failed.labels(endpoint_id).inc()
        live_endpoint.failing_since = live_endpoint.failing_since or now
        reason = None
        if status_code == 410:
            reason = "the endpoint answered 410 Gone"
        elif now - live_endpoint.failing_since > self.policy.disable_after:
            reason = f"failing continuously since {live_endpoint.failing_since.isoformat()}"
        repo = WebhookRepository(session, outcome.job.tenant_id)
        if reason and await repo.disable(endpoint_id, reason, now):
            new_events[outcome.job.tenant_id].append(_disabled_event(outcome.endpoint, reason))
        delay = None if reason else next_delay(self.policy.schedule, current.attempts, _retry_after(result))
        if delay is None:
            current.status = "dead"
            current.finished_at = now
            current.next_attempt_at = None
            self.metrics.dead.labels(endpoint_id).inc()
            return None
        current.status = "failed"
        run_after = now + timedelta(seconds=delay)
        current.next_attempt_at = run_after
        return Reschedule(outcome.job.id, run_after, current.last_error, False)

    async def refresh_depth(self) -> int:
        """Export how many deliveries wait per endpoint (a periodic job)."""
        async with self.db.sessions() as session:
            rows = (
                await session.execute(
                    select(WebhookDelivery.endpoint_id, WebhookDelivery.status).where(
                        WebhookDelivery.status.in_(("pending", "failed"))
                    )
                )
            ).all()
        counts: dict[str, int] = {}
        for endpoint_id, _ in rows:
            counts[endpoint_id] = counts.get(endpoint_id, 0) + 1
        self.metrics.queue_depth.clear()
        for endpoint_id, count in counts.items():
            self.metrics.queue_depth.labels(endpoint_id).set(count)
        return len(rows)


def _retry_after(result: HttpResult | None) -> float | None:
    if result is None:
        return None
    value = result.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _disabled_event(endpoint: WebhookEndpoint, reason: str) -> NewEvent:
    data = EndpointDisabledData(endpoint_id=endpoint.id, url=endpoint.url, reason=reason).model_dump(
        mode="json"
    )
    return NewEvent(
        EventType.ENDPOINT_DISABLED,
        data,
        None,
        None,
        f"endpoint-disabled:{endpoint.id}:{endpoint.updated_at.timestamp()}",
    )


_Row = TypeVar("_Row", WebhookDelivery, WebhookEndpoint, Event)


async def _by_id(session: AsyncSession, model: type[_Row], ids: set[Any]) -> dict[Any, _Row]:
    """Rows of `model` by primary key, in one query (nothing asked, nothing read)."""
    if not ids:
        return {}
    rows = await session.execute(select(model).where(model.id.in_(ids)))
    return {row.id: row for row in rows.scalars()}
