"""Create webhook deliveries in the same transaction as the events they carry.

One delivery per (endpoint, event), guarded by a unique key, so an event can never be
delivered twice under two delivery ids, and a committed event always has its deliveries.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.events import EventType
from chatgate.domain.ids import new_id
from chatgate.store.models import Event, Job, WebhookDelivery, WebhookEndpoint
from chatgate.store.repositories.jobs import job_row
from chatgate.store.repositories.webhooks import WebhookRepository
from chatgate.workers.queue import QueueItem

_DELIVERIES = cast(Table, WebhookDelivery.__table__)
_JOBS = cast(Table, Job.__table__)


def wants(endpoint: WebhookEndpoint, event: Event) -> bool:
    if endpoint.event_types and event.type not in endpoint.event_types:
        return False
    if endpoint.integration_ids and event.integration_id not in endpoint.integration_ids:
        return False
    return not (endpoint.format == "lovable" and event.type != EventType.MESSAGE_RECEIVED)


class WebhookFanoutHook:
    async def in_transaction(
        self, session: AsyncSession, tenant_id: str, events: list[Event], now: datetime
    ) -> list[tuple[str, QueueItem]]:
        endpoints = await WebhookRepository(session, tenant_id).enabled_endpoints()
        if not endpoints:
            return []
        deliveries: list[dict[str, object]] = []
        jobs: list[dict[str, object]] = []
        for event in events:
            for endpoint in endpoints:
                if not wants(endpoint, event):
                    continue
                delivery_id = new_id("dlv")
                deliveries.append(
                    {
                        "id": delivery_id,
                        "tenant_id": tenant_id,
                        "endpoint_id": endpoint.id,
                        "event_row_id": event.id,
                        "event_id": event.event_id,
                        "event_type": event.type,
                        "conversation_id": event.conversation_id,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
                jobs.append(job_row("deliver", tenant_id, delivery_id, now))
        if deliveries:
            # Core inserts: the ORM's bulk path spent ~1.8 ms per batch converting the dicts.
            await session.execute(_DELIVERIES.insert(), deliveries)
            await session.execute(_JOBS.insert(), jobs)
        return [("deliver", QueueItem(str(j["id"]), tenant_id)) for j in jobs]
