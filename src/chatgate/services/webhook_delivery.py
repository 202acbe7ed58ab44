"""The delivery worker: sign, POST (SSRF-safe), record the attempt, schedule the next one.

Every delivery and every attempt is a row, so retries survive restarts: the job's run_after
carries the next attempt time, and the sweeper dispatches it when due. `webhook-id` is the
event id, stable across retries, so receivers can deduplicate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

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
from chatgate.services.fanout import Fanout
from chatgate.services.inbound_processor import LeaseLost
from chatgate.store.db import Database
from chatgate.store.models import Event, Job, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from chatgate.store.repositories.events import EventLog, NewEvent
from chatgate.store.repositories.jobs import JobStore
from chatgate.store.repositories.sealed import endpoint_secret_aad
from chatgate.store.repositories.webhooks import WebhookRepository
from chatgate.workers.queue import QueueItem

log = logging.getLogger(__name__)
_BODY_CAP = 4096


@dataclass(frozen=True)
class DeliveryPolicy:
    schedule: tuple[float, ...]
    disable_after: timedelta = timedelta(days=5)


class DeliveryWorker:
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

    async def handle(self, item: QueueItem) -> None:
        async with self.db.transaction() as session:
            job = await JobStore(session).claim(item.job_id, self.worker_id, self.clock(), self.lease)
        if job is None:
            return
        try:
            await self._deliver(job)
        except LeaseLost:
            log.info("delivery job %s was taken over", job.id)
        except Exception as exc:
            log.exception("delivery job %s crashed", job.id)
            await self._later(job, 30.0, f"{type(exc).__name__}: {exc}")

    async def _deliver(self, job: Job) -> None:
        async with self.db.sessions() as session:
            repo = WebhookRepository(session, job.tenant_id)
            delivery = await repo.delivery(job.subject_id)
            endpoint = await repo.endpoint(delivery.endpoint_id)
            event = (
                await session.execute(select(Event).where(Event.id == delivery.event_row_id))
            ).scalar_one()
            blocked = endpoint.ordering == "conversation" and await repo.earlier_open_in_conversation(
                delivery
            )
        if delivery.status in ("succeeded", "skipped", "dead"):
            await self._close(job, None)
            return
        if not endpoint.enabled:
            await self._close(
                job, ("failed", None, f"endpoint disabled: {endpoint.disabled_reason}"), delivery
            )
            return
        if blocked:
            await self._later(job, 1.0, "waiting for an earlier event of this conversation", count=False)
            return
        if endpoint.rate_limit_per_second:
            rate = endpoint.rate_limit_per_second
            decision = await self.limiter.hit(f"endpoint:{endpoint.id}", paced(rate))
            if not decision.allowed:
                await self._later(job, decision.retry_after, None, count=False)
                return
        body = render(event, endpoint.format, endpoint.format_options)
        if body is None:
            await self._close(job, ("skipped", None, None), delivery)
            return
        headers = await self._headers(endpoint, event, body)
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
        await self._record(job, delivery, endpoint, headers, result, error, elapsed)

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
        return (
            await self.box.open(sealed, endpoint_secret_aad(column)(endpoint.tenant_id, endpoint.id))
        ).decode()

    async def _record(
        self,
        job: Job,
        delivery: WebhookDelivery,
        endpoint: WebhookEndpoint,
        headers: dict[str, str],
        result: HttpResult | None,
        error: str | None,
        elapsed: float,
    ) -> None:
        now = self.clock()
        status_code = result.status if result is not None else None
        shown_headers = {
            k: v for k, v in headers.items() if k.lower() not in ("webhook-signature", "x-lovable-secret")
        }
        attempt = WebhookAttempt(
            tenant_id=job.tenant_id,
            delivery_id=delivery.id,
            attempted_at=now,
            url=endpoint.url,
            request_headers=shown_headers,
            response_status=status_code,
            response_body=result.body[:_BODY_CAP].decode("utf-8", errors="replace")
            if result is not None
            else None,
            duration_ms=round(elapsed * 1000, 2),
            error=error,
        )
        ok = status_code is not None and 200 <= status_code < 300
        new_events: list[NewEvent] = []
        async with self.db.transaction() as session:
            session.add(attempt)
            repo = WebhookRepository(session, job.tenant_id)
            current = await repo.delivery(delivery.id)
            live_endpoint = await repo.endpoint(endpoint.id)
            current.attempts += 1
            current.last_status_code = status_code
            current.last_error = error or (None if ok else f"the endpoint answered {status_code}")
            run_after: datetime | None = None
            if ok:
                current.status = "succeeded"
                current.finished_at = now
                current.next_attempt_at = None
                live_endpoint.failing_since = None
                self.metrics.succeeded.labels(endpoint.id).inc()
            else:
                self.metrics.failed.labels(endpoint.id).inc()
                live_endpoint.failing_since = live_endpoint.failing_since or now
                reason = None
                if status_code == 410:
                    reason = "the endpoint answered 410 Gone"
                elif now - live_endpoint.failing_since > self.policy.disable_after:
                    reason = f"failing continuously since {live_endpoint.failing_since.isoformat()}"
                if reason and await repo.disable(endpoint.id, reason, now):
                    new_events.append(_disabled_event(endpoint, reason))
                delay = (
                    None
                    if reason
                    else next_delay(self.policy.schedule, current.attempts, _retry_after(result))
                )
                if delay is None:
                    current.status = "dead"
                    current.finished_at = now
                    current.next_attempt_at = None
                    self.metrics.dead.labels(endpoint.id).inc()
                else:
                    current.status = "failed"
                    run_after = now + timedelta(seconds=delay)
                    current.next_attempt_at = run_after
            stored = await EventLog(session, job.tenant_id).append(new_events, now)
            pending = await self.fanout.in_transaction(session, job.tenant_id, stored, now)
            store = JobStore(session)
            if run_after is not None:
                held = await store.retry_later(
                    job, self.worker_id, run_after, current.last_error, count_attempt=False
                )
            else:
                held = await store.finish(job, self.worker_id, now)
            if not held:
                raise LeaseLost
        await self.fanout.after_commit(pending)

    async def _close(
        self,
        job: Job,
        outcome: tuple[str, int | None, str | None] | None,
        delivery: WebhookDelivery | None = None,
    ) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            if outcome is not None and delivery is not None:
                current = await WebhookRepository(session, job.tenant_id).delivery(delivery.id)
                current.status, current.last_status_code, current.last_error = outcome
                current.finished_at = now
            if not await JobStore(session).finish(job, self.worker_id, now):
                raise LeaseLost

    async def _later(self, job: Job, delay: float, error: str | None, *, count: bool = True) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            await JobStore(session).retry_later(
                job, self.worker_id, now + timedelta(seconds=max(0.05, delay)), error, count_attempt=count
            )

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
