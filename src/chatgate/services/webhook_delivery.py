"""The delivery worker: sign, POST (SSRF-safe), record the attempt, schedule the next one.

Every delivery and every attempt is a row, so retries survive restarts: the job's run_after
carries the next attempt time, and the sweeper dispatches it when due. `webhook-id` is the
event id, stable across retries, so receivers can deduplicate.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    func,
    insert,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

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
from chatgate.store.prepared import Prepared
from chatgate.store.repositories.events import EventLog, NewEvent
from chatgate.store.repositories.jobs import (
    CLAIM,
    FINISH,
    RETRY,
    ClaimedJob,
    Reschedule,
    held_by_worker,
    retry_params,
)
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


# ------------------------------------------------------------------ what a delivery needs, as plain rows


class _DeliveryRow(NamedTuple):
    id: str
    tenant_id: str
    endpoint_id: str
    event_row_id: int
    conversation_id: str | None
    status: str


class _EndpointRow(NamedTuple):
    id: str
    tenant_id: str
    url: str
    enabled: bool
    disabled_reason: str | None
    ordering: str
    rate_limit_per_second: float | None
    format: str
    format_options: dict[str, Any]
    custom_headers: dict[str, Any]
    secret_sealed: str
    previous_secret_sealed: str | None
    previous_secret_expires_at: datetime | None
    format_secret_sealed: str | None
    updated_at: datetime


class _EventRow(NamedTuple):
    event_id: str
    tenant_id: str
    sequence: int
    type: str
    version: int
    integration_id: str | None
    conversation_id: str | None
    created_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A claimed delivery job with what it needs, read in the claim's transaction (or known to
    the transaction that created and claimed it: `lease_until` is then that claim's)."""

    job: ClaimedJob
    delivery: _DeliveryRow | None
    endpoint: _EndpointRow | None
    event: _EventRow | None
    lease_until: datetime | None = None


def endpoint_row(endpoint: WebhookEndpoint) -> _EndpointRow:
    """What a delivery reads of its endpoint (made once per endpoint for a batch's hand-offs)."""
    return _EndpointRow._make(getattr(endpoint, name) for name in _EndpointRow._fields)


def event_row(event: Event) -> _EventRow:
    """What a delivery reads of its event (made once per event, whatever its endpoints)."""
    return _EventRow._make(getattr(event, name) for name in _EventRow._fields)


def claimed_delivery(
    job_id: str,
    delivery: dict[str, Any],
    endpoint: _EndpointRow,
    event: _EventRow,
    lease_until: datetime,
) -> _Loaded:
    """What the claim turn would read for a delivery job claimed by the transaction that
    created it, from what that transaction wrote (the hand-off in `webhook_fanout.py`)."""
    row = _DeliveryRow._make(delivery[name] for name in _DeliveryRow._fields)
    job = ClaimedJob(job_id, row.tenant_id, row.id, 1)
    return _Loaded(job, row, endpoint, event, lease_until)


class _Live(NamedTuple):
    """A job still ours at recording time, with its delivery and endpoint as they are now."""

    delivery_id: str | None  # None: the delivery is gone (or not the job's tenant's)
    attempts: int
    endpoint_id: str | None
    failing_since: datetime | None


# ------------------------------------------------------------------ statements, built once

_JOBS = cast(Table, Job.__table__)
_DELIVERIES = cast(Table, WebhookDelivery.__table__)
_ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
_EVENTS = cast(Table, Event.__table__)
_ATTEMPTS = cast(Table, WebhookAttempt.__table__)


# A delivery belongs to its job's tenant; its endpoint and event to the delivery's.
_JOB_DELIVERY = and_(_DELIVERIES.c.id == _JOBS.c.subject_id, _DELIVERIES.c.tenant_id == _JOBS.c.tenant_id)
_DELIVERY_ENDPOINT = and_(
    _ENDPOINTS.c.id == _DELIVERIES.c.endpoint_id, _ENDPOINTS.c.tenant_id == _DELIVERIES.c.tenant_id
)
_DELIVERY_EVENT = and_(
    _EVENTS.c.id == _DELIVERIES.c.event_row_id, _EVENTS.c.tenant_id == _DELIVERIES.c.tenant_id
)


_JOB_END = 4
_DELIVERY_END = _JOB_END + len(_DeliveryRow._fields)
_ENDPOINT_END = _DELIVERY_END + len(_EndpointRow._fields)
_LOADED = (
    _JOBS.c.id,
    _JOBS.c.tenant_id,
    _JOBS.c.subject_id,
    _JOBS.c.attempts,
    *(_DELIVERIES.c[name] for name in _DeliveryRow._fields),
    *(_ENDPOINTS.c[name] for name in _EndpointRow._fields),
    *(_EVENTS.c[name] for name in _EventRow._fields),
)
_LIVE = (_DELIVERIES.c.attempts, _ENDPOINTS.c.failing_since)
_ROW_IDS = (_JOBS.c.id, _DELIVERIES.c.id, _ENDPOINTS.c.id)


def _null(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return type_coerce(null(), column.type)


def _ids_only(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return column if any(column is kept for kept in _ROW_IDS) else _null(column)


_WITH_ENDPOINT = _JOBS.outerjoin(_DELIVERIES, _JOB_DELIVERY).outerjoin(_ENDPOINTS, _DELIVERY_ENDPOINT)
# After the claim, the turn's one read (rows of the same shape, told apart by job id):
# - the jobs just claimed (b_claims, this lease) with all their deliveries need;
# - the jobs whose outcomes are recorded (b_held) that are still ours, with the live state of
#   their deliveries and endpoints (ids, attempts, failing_since) that the outcomes build on.
_READ = Prepared(
    union_all(
        select(*_LOADED, *map(_null, _LIVE))
        .select_from(_WITH_ENDPOINT.outerjoin(_EVENTS, _DELIVERY_EVENT))
        .where(held_by_worker("b_claims"), _JOBS.c.lease_until == bindparam("b_until")),
        select(*map(_ids_only, _LOADED), *_LIVE).select_from(_WITH_ENDPOINT).where(held_by_worker("b_held")),
    )
)
_BY_DELIVERY = and_(_DELIVERIES.c.id == bindparam("b_id"), _DELIVERIES.c.tenant_id == bindparam("b_tenant"))
# An attempt's result; `finished_at` is kept when b_finished is NULL (a failure to retry).
_RECORD_ATTEMPT = Prepared(
    _DELIVERIES.update()
    .where(_BY_DELIVERY)
    .values(
        status=bindparam("b_status"),
        attempts=_DELIVERIES.c.attempts + 1,
        last_status_code=bindparam("b_code"),
        last_error=bindparam("b_error"),
        next_attempt_at=bindparam("b_next"),
        finished_at=func.coalesce(
            bindparam("b_finished", type_=_DELIVERIES.c.finished_at.type), _DELIVERIES.c.finished_at
        ),
    )
)
# A delivery closed without an attempt (endpoint disabled or deleted, event not carried).
_CLOSE = Prepared(
    _DELIVERIES.update()
    .where(_BY_DELIVERY)
    .values(
        status=bindparam("b_status"),
        last_status_code=bindparam("b_code"),
        last_error=bindparam("b_error"),
        finished_at=bindparam("b_finished"),
    )
)
_INSERT_ATTEMPTS = Prepared(insert(_ATTEMPTS))
# (`updated_at` follows by its onupdate, as it did when the ORM flushed this change)
_SET_FAILING = Prepared(
    _ENDPOINTS.update().where(_ENDPOINTS.c.id == bindparam("b_id")).values(failing_since=bindparam("b_since"))
)


# Open deliveries per endpoint, through the index led by status: only the open ones are read.
_OPEN_PER_ENDPOINT = (
    select(_DELIVERIES.c.endpoint_id, func.count())
    .where(_DELIVERIES.c.status.in_(("pending", "failed")))
    .group_by(_DELIVERIES.c.endpoint_id)
)


def _live(row: Sequence[Any]) -> _Live:
    return _Live(row[_JOB_END], row[-2] or 0, row[_DELIVERY_END], row[-1])


def _loaded(row: Sequence[Any]) -> _Loaded:
    job = ClaimedJob(row[0], row[1], row[2], int(row[3]))
    if row[_JOB_END] is None:
        return _Loaded(job, None, None, None)
    delivery = _DeliveryRow._make(row[_JOB_END:_DELIVERY_END])
    endpoint = None if row[_DELIVERY_END] is None else _EndpointRow._make(row[_DELIVERY_END:_ENDPOINT_END])
    event = None if row[_ENDPOINT_END] is None else _EventRow._make(row[_ENDPOINT_END : -len(_LIVE)])
    return _Loaded(job, delivery, endpoint, event)


# ------------------------------------------------------------------ outcomes


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
    endpoint: _EndpointRow
    attempted_at: datetime  # retries are scheduled from here, however late the recording
    shown_headers: dict[str, str]
    result: HttpResult | None
    error: str | None
    elapsed: float


_Outcome = _Close | _Later | _Attempted
_Request = str | _Outcome  # a job id to claim, or an outcome to record


@dataclass(frozen=True, slots=True)
class _Read:
    """What the turn read: the claims it made, loaded, and the recorded jobs still ours."""

    loaded: dict[str, _Loaded]
    live: dict[str, _Live]


@dataclass(slots=True)
class _Writes:
    """What one batch of outcomes writes, gathered first, then written a statement per kind."""

    finished: list[str] = field(default_factory=list)
    later: list[Reschedule] = field(default_factory=list)
    closed: list[dict[str, object]] = field(default_factory=list)
    attempted: list[dict[str, object]] = field(default_factory=list)
    attempts: list[dict[str, object]] = field(default_factory=list)
    # endpoint id → failing_since: as read, and as this batch leaves it
    failing_before: dict[str, datetime | None] = field(default_factory=dict)
    failing: dict[str, datetime | None] = field(default_factory=dict)
    delivery_attempts: dict[str, int] = field(default_factory=dict)
    disables: list[_Disable] = field(default_factory=list)  # rare: written apart, in order


@dataclass(frozen=True, slots=True)
class _Disable:
    """An endpoint to disable (410, or failing too long), and the tenant to tell if we did."""

    tenant_id: str
    endpoint: _EndpointRow
    reason: str
    at: datetime


class DeliveryWorker:
    """Deliveries run concurrently, each on its own (a slow endpoint holds up nobody else),
    while their database work is grouped: the outcomes and the claims that arrive together
    are recorded, made and loaded in one transaction (one commit), with plain statements."""

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
        record_linger: float = 0.0,
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
        # Outcomes wait up to `record_linger` to be recorded together (one transaction for more
        # of them); claims wait for nothing, nor do outcomes for endpoints ordered per
        # conversation (the next delivery of the conversation waits for this one's record).
        self._turns: GroupBatcher[_Request, _Loaded | None] = GroupBatcher(
            "deliver-turns", self._turn, linger=record_linger, may_wait=_may_wait
        )
        self._secrets = SecretCache(secret_ttl)

    async def handle(self, item: QueueItem) -> None:
        preloaded = item.preloaded
        if isinstance(preloaded, _Loaded) and preloaded.job.id == item.job_id:
            if not self._fresh(preloaded):
                return  # the sweeper dispatches it again once its lease has run out
            loaded: _Loaded | None = preloaded
        else:
            loaded = await self._turns.submit(item.job_id)
        if loaded is None:
            return
        try:
            outcome = await self._attempt(loaded)
        except Exception as exc:
            log.exception("delivery job %s crashed", loaded.job.id)
            outcome = self._later(loaded.job, 30.0, f"{type(exc).__name__}: {exc}")
        try:
            await self._turns.submit(outcome)
        except LeaseLost:
            log.info("delivery job %s was taken over", loaded.job.id)

    def _fresh(self, loaded: _Loaded) -> bool:
        """Whether a job claimed at its creation still has half its lease: one that waited
        longer (a backlog) could lose it mid-attempt and be delivered twice."""
        if loaded.lease_until is None or loaded.lease_until - self.clock() >= self.lease / 2:
            return True
        log.info("delivery job %s waited too long for its attempt; left to the sweeper", loaded.job.id)
        return False

    async def _turn(self, requests: list[_Request]) -> list[_Loaded | BaseException | None]:
        """Record the outcomes, then make the claims, that arrived together: the loaded claim
        (None if not ours) for a job id, None or LeaseLost for an outcome."""
        claims = [r for r in requests if isinstance(r, str)]
        outcomes = [r for r in requests if not isinstance(r, str)]
        try:
            loaded, held = await self._transact(claims, outcomes)
        except Exception as exc:
            if not claims or not outcomes:
                raise
            log.warning(
                "claims and outcomes failed together (%s: %s); retrying apart", type(exc).__name__, exc
            )
            return await self._apart(requests)
        # a job queued twice is delivered once
        return [
            loaded.pop(r, None) if isinstance(r, str) else None if r.job.id in held else LeaseLost()
            for r in requests
        ]

    async def _apart(self, requests: list[_Request]) -> list[_Loaded | BaseException | None]:
        """A failed mixed turn again as two, so claims never fail for outcomes or the reverse."""
        results: list[_Loaded | BaseException | None] = [None] * len(requests)
        for claims in (True, False):
            positions = [n for n, r in enumerate(requests) if isinstance(r, str) == claims]
            try:
                part = await self._turn([requests[n] for n in positions])
            except Exception as exc:  # noqa: BLE001 - goes to this part's callers
                part = [exc] * len(positions)
            for n, result in zip(positions, part, strict=True):
                results[n] = result
        return results

    async def _transact(
        self, claims: list[str], outcomes: list[_Outcome]
    ) -> tuple[dict[str, _Loaded], set[str]]:
        """One transaction: the claims made, one read for claims and outcomes, the outcomes
        recorded. The loaded claims, and the ids of the recorded jobs that were still ours."""
        now = self.clock()
        held = {o.job.id for o in outcomes}
        params = {
            # a job recorded in this turn is not claimable (finished or rescheduled by it)
            "b_claims": [job_id for job_id in claims if job_id not in held],
            "b_held": list(held),
            "b_worker": self.worker_id,
            "b_now": now,
            "b_until": now + self.lease,
        }
        pendings: list[PendingFanout] = []
        async with self.db.transaction() as session:
            read, writes = await session.run_sync(self._claim_read_record, params, outcomes)
            if writes.disables:
                pendings = await self._disable(session, writes.disables, now)
                await session.run_sync(self._write_last, writes, now)
        for pending in pendings:
            await self.fanout.after_commit(pending)
        return read.loaded, set(read.live)

    def _claim_read_record(
        self, session: Session, params: dict[str, Any], outcomes: list[_Outcome]
    ) -> tuple[_Read, _Writes]:
        """The turn's statements, in one greenlet; all of them unless an endpoint is disabled."""
        connection = session.connection()
        if params["b_claims"]:
            CLAIM.run_on(connection, params)
        read = _Read({}, {})
        held = set(params["b_held"])
        for row in _READ.rows_on(connection, params):
            if row[0] in held:
                read.live[row[0]] = _live(row)
            else:
                read.loaded[row[0]] = _loaded(row)
        writes = _Writes()
        for outcome in outcomes:
            state = read.live.get(outcome.job.id)
            if state is not None:
                self._plan(outcome, state, writes, params["b_now"])
        _write_deliveries(connection, writes)
        if not writes.disables:
            self._write_last(session, writes, params["b_now"])
        return read, writes

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

    async def _blocked(self, delivery: _DeliveryRow) -> bool:
        async with self.db.sessions() as session:
            return await WebhookRepository(session, delivery.tenant_id).earlier_open_in_conversation(delivery)

    async def _headers(self, endpoint: _EndpointRow, event: _EventRow, body: bytes) -> dict[str, str]:
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

    async def _open(self, endpoint: _EndpointRow, column: str, sealed: str) -> str:
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

    def _plan(self, outcome: _Outcome, live: _Live, writes: _Writes, now: datetime) -> None:
        """Add one outcome of a job still ours to the batch's writes."""
        if isinstance(outcome, _Later):
            writes.later.append(Reschedule(outcome.job.id, outcome.run_after, outcome.error, outcome.count))
            return
        delivery_id = live.delivery_id  # never another tenant's row: the query joins on the tenant
        if isinstance(outcome, _Close):
            if delivery_id is not None and outcome.delivery_id == delivery_id and outcome.outcome is not None:
                status, code, error = outcome.outcome
                writes.closed.append(
                    {
                        "b_id": delivery_id,
                        "b_tenant": outcome.job.tenant_id,
                        "b_status": status,
                        "b_code": code,
                        "b_error": error,
                        "b_finished": now,
                    }
                )
            writes.finished.append(outcome.job.id)
            return
        if delivery_id != outcome.delivery_id or live.endpoint_id != outcome.endpoint.id:
            writes.finished.append(outcome.job.id)  # deleted meanwhile: nothing left to record
            return
        retry = self._apply_attempt(outcome, live, writes)
        if retry is None:
            writes.finished.append(outcome.job.id)
        else:
            writes.later.append(retry)

    def _apply_attempt(self, outcome: _Attempted, live: _Live, writes: _Writes) -> Reschedule | None:
        """Record one attempt on its delivery and endpoint; the job's next run, or None when done."""
        now = outcome.attempted_at
        result = outcome.result
        status_code = result.status if result is not None else None
        endpoint_id = outcome.endpoint.id
        writes.attempts.append(
            {
                "tenant_id": outcome.job.tenant_id,
                "delivery_id": outcome.delivery_id,
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
        # the same delivery twice in a batch (a resend racing a retry) counts both attempts
        attempts = writes.delivery_attempts.get(outcome.delivery_id, live.attempts) + 1
        writes.delivery_attempts[outcome.delivery_id] = attempts
        if endpoint_id not in writes.failing:
            writes.failing_before[endpoint_id] = writes.failing[endpoint_id] = live.failing_since
        ok = status_code is not None and 200 <= status_code < 300
        error = outcome.error or (None if ok else f"the endpoint answered {status_code}")
        update: dict[str, object] = {
            "b_id": outcome.delivery_id,
            "b_tenant": outcome.job.tenant_id,
            "b_code": status_code,
            "b_error": error,
        }
        writes.attempted.append(update)
        if ok:
            update.update(b_status="succeeded", b_finished=now, b_next=None)
            writes.failing[endpoint_id] = None
            self.metrics.succeeded.labels(endpoint_id).inc()
            return None
        self.metrics.failed.labels(endpoint_id).inc()
        failing_since = writes.failing[endpoint_id] = writes.failing[endpoint_id] or now
        reason = None
        if status_code == 410:
            reason = "the endpoint answered 410 Gone"
        elif now - failing_since > self.policy.disable_after:
            reason = f"failing continuously since {failing_since.isoformat()}"
        if reason:
            writes.disables.append(_Disable(outcome.job.tenant_id, outcome.endpoint, reason, now))
        delay = None if reason else next_delay(self.policy.schedule, attempts, _retry_after(result))
        if delay is None:
            update.update(b_status="dead", b_finished=now, b_next=None)
            self.metrics.dead.labels(endpoint_id).inc()
            return None
        run_after = now + timedelta(seconds=delay)
        update.update(b_status="failed", b_finished=None, b_next=run_after)  # finished_at kept
        return Reschedule(outcome.job.id, run_after, error, False)

    async def _disable(
        self, session: AsyncSession, disables: list[_Disable], now: datetime
    ) -> list[PendingFanout]:
        """Disable the endpoints (each once) and tell their tenants, before the jobs close."""
        events: dict[str, list[NewEvent]] = defaultdict(list)
        for disable in disables:
            repo = WebhookRepository(session, disable.tenant_id)
            if await repo.disable(disable.endpoint.id, disable.reason, disable.at):
                events[disable.tenant_id].append(_disabled_event(disable.endpoint, disable.reason))
        pendings: list[PendingFanout] = []
        for tenant_id, new in events.items():
            stored = await EventLog(session, tenant_id).append(new, now)
            pendings.append(await self.fanout.in_transaction(session, tenant_id, stored, now))
        return pendings

    def _write_last(self, session: Session, writes: _Writes, now: datetime) -> None:
        """The endpoints' failing_since as the batch leaves them, then the jobs."""
        connection = session.connection()
        failing = [
            {"b_id": endpoint_id, "b_since": since}
            for endpoint_id, since in writes.failing.items()
            if since != writes.failing_before[endpoint_id]
        ]
        if failing:
            _SET_FAILING.run_many_on(connection, failing)
        if writes.finished:
            FINISH.run_on(
                connection, {"b_finished": writes.finished, "b_worker": self.worker_id, "b_now": now}
            )
        if writes.later:
            RETRY.run_many_on(
                connection, [{**p, "b_worker": self.worker_id} for p in retry_params(writes.later)]
            )

    async def refresh_depth(self) -> int:
        """Export how many deliveries wait per endpoint (a periodic job)."""
        async with self.db.sessions() as session:
            counts = {
                str(endpoint_id): int(count)
                for endpoint_id, count in await session.execute(_OPEN_PER_ENDPOINT)
            }
        self.metrics.queue_depth.clear()
        for endpoint_id, count in counts.items():
            self.metrics.queue_depth.labels(endpoint_id).set(count)
        return sum(counts.values())


def _may_wait(request: _Request) -> bool:
    if isinstance(request, str):
        return False  # a claim: a delivery waits for it
    return not (isinstance(request, _Attempted) and request.endpoint.ordering == "conversation")


def _write_deliveries(connection: Connection, writes: _Writes) -> None:
    if writes.closed:
        _CLOSE.run_many_on(connection, writes.closed)
    if writes.attempted:
        _RECORD_ATTEMPT.run_many_on(connection, writes.attempted)
    if writes.attempts:
        _INSERT_ATTEMPTS.run_many_on(connection, writes.attempts)


def _retry_after(result: HttpResult | None) -> float | None:
    if result is None:
        return None
    value = result.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _disabled_event(endpoint: _EndpointRow, reason: str) -> NewEvent:
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
