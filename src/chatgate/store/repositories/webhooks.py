"""Webhook endpoints, deliveries and attempts of one tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, cast

from sqlalchemy import Table, bindparam, func, select, update

from chatgate.store.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from chatgate.store.pagination import Page
from chatgate.store.prepared import Prepared
from chatgate.store.repositories.base import TenantScoped
from chatgate.store.transient import from_rows

OPEN_STATUSES = ("pending", "failed")


class DeliveryPosition(Protocol):
    """Where a delivery stands in its endpoint's stream (a `WebhookDelivery`, or a lighter row)."""

    @property
    def endpoint_id(self) -> str: ...
    @property
    def conversation_id(self) -> str | None: ...
    @property
    def event_row_id(self) -> int: ...


# Every inbound batch asks; built once (building it cost more than running it), read as Core
# rows (the ORM's loading cost more than the query): read-only objects, never in the session.
_ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
_ENABLED = Prepared(
    select(*_ENDPOINTS.columns).where(
        _ENDPOINTS.c.tenant_id == bindparam("b_tenant"), _ENDPOINTS.c.enabled.is_(True)
    )
)


class WebhookRepository(TenantScoped):
    async def endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        return await self._get(WebhookEndpoint, endpoint_id, "webhook endpoint")

    async def endpoints(self, *, cursor: str | None, limit: int) -> Page[WebhookEndpoint]:
        return await self._page(self._select(WebhookEndpoint), WebhookEndpoint, cursor, limit)

    async def enabled_endpoints(self) -> list[WebhookEndpoint]:
        """The tenant's enabled endpoints, to read (changes to them are not saved)."""
        rows = await _ENABLED.rows(self.session, {"b_tenant": self.tenant_id})
        return from_rows(WebhookEndpoint, rows)

    async def delivery(self, delivery_id: str) -> WebhookDelivery:
        return await self._get(WebhookDelivery, delivery_id, "webhook delivery")

    async def deliveries(
        self, *, cursor: str | None, limit: int, endpoint_id: str | None, status: str | None
    ) -> Page[WebhookDelivery]:
        query = self._select(WebhookDelivery)
        if endpoint_id:
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
        if status:
            query = query.where(WebhookDelivery.status == status)
        return await self._page(query, WebhookDelivery, cursor, limit)

    async def attempts(self, delivery_id: str) -> list[WebhookAttempt]:
        query = (
            select(WebhookAttempt)
            .where(WebhookAttempt.tenant_id == self.tenant_id, WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.id)
        )
        return list((await self.session.execute(query)).scalars())

    async def earlier_open_in_conversation(self, delivery: DeliveryPosition) -> bool:
        """Strict ordering: is an older delivery of the same conversation still undelivered?"""
        if delivery.conversation_id is None:
            return False
        query = (
            select(func.count())
            .select_from(WebhookDelivery)
            .where(
                WebhookDelivery.tenant_id == self.tenant_id,
                WebhookDelivery.endpoint_id == delivery.endpoint_id,
                WebhookDelivery.conversation_id == delivery.conversation_id,
                WebhookDelivery.event_row_id < delivery.event_row_id,
                WebhookDelivery.status.in_(OPEN_STATUSES),
            )
        )
        return int((await self.session.execute(query)).scalar_one()) > 0

    async def failed_since(self, endpoint_id: str, since: datetime, limit: int) -> list[WebhookDelivery]:
        query = (
            self._select(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.created_at >= since,
                WebhookDelivery.status.in_(("failed", "dead")),
            )
            .order_by(WebhookDelivery.event_row_id)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars())

    async def disable(self, endpoint_id: str, reason: str, now: datetime) -> bool:
        result = await self.session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.tenant_id == self.tenant_id,
                WebhookEndpoint.id == endpoint_id,
                WebhookEndpoint.enabled.is_(True),
            )
            .values(enabled=False, disabled_reason=reason, updated_at=now)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
