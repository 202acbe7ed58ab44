"""SQLAlchemy models. Every tenant-owned row carries `tenant_id`; repositories scope by it."""

from chatgate.store.models.access import ApiKey, AuditEntry, Integration, Project, RefreshToken, Tenant, User
from chatgate.store.models.base import ID, Base
from chatgate.store.models.messaging import (
    Channel,
    Contact,
    Conversation,
    Event,
    IdempotencyKey,
    Media,
    Message,
    RawEvent,
    TenantSequence,
)
from chatgate.store.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from chatgate.store.models.work import Job, Lease

__all__ = [
    "ID",
    "ApiKey",
    "AuditEntry",
    "Base",
    "Channel",
    "Contact",
    "Conversation",
    "Event",
    "IdempotencyKey",
    "Integration",
    "Job",
    "Lease",
    "Media",
    "Message",
    "Project",
    "RawEvent",
    "RefreshToken",
    "Tenant",
    "TenantSequence",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
