"""Managing tenant webhook endpoints: secrets shown once, rotation with a grace period,
resending one delivery, and recovering everything an endpoint missed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chatgate.delivery import signing
from chatgate.delivery.http import check_url
from chatgate.domain.clock import Clock
from chatgate.domain.errors import InvalidInput
from chatgate.domain.events import EventType
from chatgate.domain.ids import new_id
from chatgate.security.keyring.envelope import SecretBox
from chatgate.security.redaction import Redactor
from chatgate.services.fanout import Publish
from chatgate.store.db import Database
from chatgate.store.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from chatgate.store.pagination import Page
from chatgate.store.repositories.jobs import new_job
from chatgate.store.repositories.sealed import endpoint_secret_aad
from chatgate.store.repositories.webhooks import WebhookRepository
from chatgate.workers.queue import QueueItem

MAX_RECOVER = 1000


@dataclass
class EndpointSpec:
    url: str | None = None
    description: str | None = None
    event_types: list[str] | None = None
    integration_ids: list[str] | None = None
    custom_headers: dict[str, str] | None = None
    rate_limit_per_second: float | None = None
    ordering: str | None = None
    format: str | None = None
    format_options: dict[str, Any] | None = None
    format_secret: str | None = None
    enabled: bool | None = None
    unset: set[str] = field(default_factory=set)


class WebhookService:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        redactor: Redactor,
        publish: Publish,
        clock: Clock,
        *,
        allow_hosts: list[str],
        allow_http: bool,
    ) -> None:
        self.db = db
        self.box = box
        self.redactor = redactor
        self.publish = publish
        self.clock = clock
        self.allow_hosts = allow_hosts
        self.allow_http = allow_http

    def _check(self, spec: EndpointSpec) -> None:
        if spec.url is not None:
            spec.url = check_url(spec.url, self.allow_hosts, self.allow_http)
        if spec.event_types:
            known = {t.value for t in EventType}
            unknown = [t for t in spec.event_types if t not in known]
            if unknown:
                raise InvalidInput(f"unknown event types: {', '.join(unknown)}")

    async def _seal(self, tenant_id: str, endpoint_id: str, column: str, value: str) -> str:
        self.redactor.register(value)
        return await self.box.seal(value.encode(), endpoint_secret_aad(column)(tenant_id, endpoint_id))

    async def create(self, tenant_id: str, spec: EndpointSpec) -> tuple[WebhookEndpoint, str]:
        if spec.url is None:
            raise InvalidInput("an endpoint needs a url")
        self._check(spec)
        endpoint_id = new_id("whe")
        secret = signing.generate_secret()
        endpoint = WebhookEndpoint(
            id=endpoint_id,
            tenant_id=tenant_id,
            url=spec.url,
            description=spec.description or "",
            event_types=spec.event_types or [],
            integration_ids=spec.integration_ids or [],
            enabled=spec.enabled if spec.enabled is not None else True,
            custom_headers=spec.custom_headers or {},
            rate_limit_per_second=spec.rate_limit_per_second,
            ordering=spec.ordering or "none",
            format=spec.format or "standard",
            format_options=spec.format_options or {},
            secret_sealed=await self._seal(tenant_id, endpoint_id, "secret_sealed", secret),
            format_secret_sealed=(
                await self._seal(tenant_id, endpoint_id, "format_secret_sealed", spec.format_secret)
                if spec.format_secret
                else None
            ),
            created_at=self.clock(),
            updated_at=self.clock(),
        )
        async with self.db.transaction() as session:
            session.add(endpoint)
        return endpoint, secret

    async def update(self, tenant_id: str, endpoint_id: str, spec: EndpointSpec) -> WebhookEndpoint:
        self._check(spec)
        format_secret = (
            await self._seal(tenant_id, endpoint_id, "format_secret_sealed", spec.format_secret)
            if spec.format_secret
            else None
        )
        async with self.db.transaction() as session:
            endpoint = await WebhookRepository(session, tenant_id).endpoint(endpoint_id)
            for name in (
                "url",
                "description",
                "event_types",
                "integration_ids",
                "custom_headers",
                "rate_limit_per_second",
                "ordering",
                "format",
                "format_options",
            ):
                value = getattr(spec, name)
                if value is not None or name in spec.unset:
                    setattr(endpoint, name, value)
            if format_secret is not None:
                endpoint.format_secret_sealed = format_secret
            if spec.enabled is not None:
                endpoint.enabled = spec.enabled
                endpoint.disabled_reason = None if spec.enabled else "disabled by a user"
                if spec.enabled:
                    endpoint.failing_since = None
            endpoint.updated_at = self.clock()
        return endpoint

    async def rotate_secret(
        self, tenant_id: str, endpoint_id: str, grace: timedelta
    ) -> tuple[WebhookEndpoint, str]:
        """A new secret; the old one stays valid (both signatures sent) for `grace`."""
        secret = signing.generate_secret()
        sealed = await self._seal(tenant_id, endpoint_id, "secret_sealed", secret)
        async with self.db.transaction() as session:
            endpoint = await WebhookRepository(session, tenant_id).endpoint(endpoint_id)
            old = await self.box.open(
                endpoint.secret_sealed, endpoint_secret_aad("secret_sealed")(tenant_id, endpoint_id)
            )
            endpoint.previous_secret_sealed = await self._seal(
                tenant_id, endpoint_id, "previous_secret_sealed", old.decode()
            )
            endpoint.previous_secret_expires_at = self.clock() + grace
            endpoint.secret_sealed = sealed
            endpoint.updated_at = self.clock()
        return endpoint, secret

    async def delete(self, tenant_id: str, endpoint_id: str) -> None:
        async with self.db.transaction() as session:
            endpoint = await WebhookRepository(session, tenant_id).endpoint(endpoint_id)
            await session.delete(endpoint)

    async def endpoint(self, tenant_id: str, endpoint_id: str) -> WebhookEndpoint:
        async with self.db.sessions() as session:
            return await WebhookRepository(session, tenant_id).endpoint(endpoint_id)

    async def endpoints(self, tenant_id: str, *, cursor: str | None, limit: int) -> Page[WebhookEndpoint]:
        async with self.db.sessions() as session:
            return await WebhookRepository(session, tenant_id).endpoints(cursor=cursor, limit=limit)

    async def deliveries(
        self, tenant_id: str, *, cursor: str | None, limit: int, endpoint_id: str | None, status: str | None
    ) -> Page[WebhookDelivery]:
        async with self.db.sessions() as session:
            repo = WebhookRepository(session, tenant_id)
            if endpoint_id:
                await repo.endpoint(endpoint_id)
            return await repo.deliveries(cursor=cursor, limit=limit, endpoint_id=endpoint_id, status=status)

    async def delivery(
        self, tenant_id: str, delivery_id: str
    ) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
        async with self.db.sessions() as session:
            repo = WebhookRepository(session, tenant_id)
            delivery = await repo.delivery(delivery_id)
            return delivery, await repo.attempts(delivery_id)

    async def resend(self, tenant_id: str, delivery_id: str) -> WebhookDelivery:
        async with self.db.transaction() as session:
            delivery = await WebhookRepository(session, tenant_id).delivery(delivery_id)
            items = self._requeue(session, [delivery])
        await self.publish("deliver", items)
        return delivery

    async def recover(self, tenant_id: str, endpoint_id: str, since: datetime) -> int:
        """Re-deliver everything the endpoint failed since `since` (at most 1000 a call)."""
        async with self.db.transaction() as session:
            repo = WebhookRepository(session, tenant_id)
            await repo.endpoint(endpoint_id)
            failed = await repo.failed_since(endpoint_id, since, MAX_RECOVER)
            items = self._requeue(session, failed)
        await self.publish("deliver", items)
        return len(items)

    def _requeue(self, session: Any, deliveries: list[WebhookDelivery]) -> list[QueueItem]:
        now = self.clock()
        items = []
        for delivery in deliveries:
            delivery.status = "pending"
            delivery.attempts = 0  # a manual resend gets a fresh retry schedule
            delivery.next_attempt_at = now
            delivery.finished_at = None
            job = new_job("deliver", delivery.tenant_id, delivery.id, now)
            session.add(job)
            items.append(QueueItem(job.id, delivery.tenant_id))
        return items
