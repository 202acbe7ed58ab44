"""Tenant webhook endpoints, their deliveries (one per endpoint and event) and attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatgate.store.models.base import ID, Base
from chatgate.store.types import BigIntPK, utcnow


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID, index=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(500), default="")
    event_types: Mapped[list[str]] = mapped_column(default=list)  # empty: every type
    integration_ids: Mapped[list[str]] = mapped_column(default=list)  # empty: every integration
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    custom_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float)
    ordering: Mapped[str] = mapped_column(String(20), default="none")  # none | conversation
    format: Mapped[str] = mapped_column(String(20), default="standard")  # standard | lovable
    format_options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret_sealed: Mapped[str] = mapped_column(Text)
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column()
    format_secret_sealed: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_row_id"),
        Index("ix_webhook_deliveries_endpoint_id_status_id", "endpoint_id", "status", "id"),
        # the open deliveries of every endpoint (the queue-depth gauge) without reading the others
        Index("ix_webhook_deliveries_status_endpoint_id", "status", "endpoint_id"),
        Index(
            "ix_webhook_deliveries_endpoint_id_conversation_id_event_row_id",
            "endpoint_id",
            "conversation_id",
            "event_row_id",
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID, index=True)
    endpoint_id: Mapped[str] = mapped_column(ID, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_row_id: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str] = mapped_column(ID)  # the evt_… id: the webhook-id header
    event_type: Mapped[str] = mapped_column(String(60))
    conversation_id: Mapped[str | None] = mapped_column(ID)
    status: Mapped[str] = mapped_column(
        String(20), default="pending"
    )  # pending|succeeded|failed|dead|skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    delivery_id: Mapped[str] = mapped_column(
        ID, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    url: Mapped[str] = mapped_column(Text)
    request_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
