"""Raw provider events, contacts, conversations, messages, media and the tenant event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from chatgate.store.models.base import EXTERNAL_KEY, ID, Base
from chatgate.store.types import BigIntPK, utcnow

# MySQL's BLOB holds 64 KiB; provider payloads and uploads need more.
Blob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


_PENDING = text("status = 'pending'")


class RawEvent(Base):
    """A provider request exactly as received: stored before we answer 200, replayable."""

    __tablename__ = "raw_events"
    __table_args__ = (
        UniqueConstraint("integration_id", "provider_event_id"),
        # Raw events still pending: the sweeper finds those whose inbound job was never made
        # (the job is made when a worker takes the event up). Only they are in it, where the
        # database allows a partial index.
        Index(
            "ix_raw_events_pending", "status", "received_at", sqlite_where=_PENDING, postgresql_where=_PENDING
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID, index=True)
    integration_id: Mapped[str] = mapped_column(ID, ForeignKey("integrations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    provider_event_id: Mapped[str] = mapped_column(EXTERNAL_KEY)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[bytes] = mapped_column(Blob)
    status: Mapped[str] = mapped_column(
        String(20), default="pending"
    )  # pending|processed|parse_failed|ignored
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column()


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("integration_id", "address"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID, index=True)
    integration_id: Mapped[str] = mapped_column(ID, ForeignKey("integrations.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(EXTERNAL_KEY)
    display_name: Mapped[str | None] = mapped_column(String(300))
    username: Mapped[str | None] = mapped_column(String(191))
    phone: Mapped[str | None] = mapped_column(String(40))
    unreachable: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("integration_id", "external_id"),
        Index("ix_conversations_tenant_id_last_message_at", "tenant_id", "last_message_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID, index=True)
    integration_id: Mapped[str] = mapped_column(ID, ForeignKey("integrations.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(EXTERNAL_KEY)
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str | None] = mapped_column(String(300))
    contact_id: Mapped[str | None] = mapped_column(ID, ForeignKey("contacts.id", ondelete="SET NULL"))
    last_message_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("integration_id", "direction", "provider_message_id"),
        Index("ix_messages_tenant_id_conversation_id_id", "tenant_id", "conversation_id", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID, index=True)
    integration_id: Mapped[str] = mapped_column(ID, ForeignKey("integrations.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(ID, ForeignKey("conversations.id", ondelete="CASCADE"))
    contact_id: Mapped[str | None] = mapped_column(ID, ForeignKey("contacts.id", ondelete="SET NULL"))
    direction: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    provider_message_id: Mapped[str | None] = mapped_column(EXTERNAL_KEY)
    text: Mapped[str | None] = mapped_column(LongText)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    buttons: Mapped[list[Any]] = mapped_column(default=list)
    # Provider-specific send options (parse_mode, a template, a list menu…), outbound only.
    send_options: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reply_to_message_id: Mapped[str | None] = mapped_column(ID)
    reply_to_provider_id: Mapped[str | None] = mapped_column(String(191))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    read_at: Mapped[datetime | None] = mapped_column()
    failed_at: Mapped[datetime | None] = mapped_column()
    edited_at: Mapped[datetime | None] = mapped_column()
    deleted_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IdempotencyKey(Base):
    """`Idempotency-Key` of a send: the same key within its lifetime returns the same message."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    key: Mapped[str] = mapped_column(EXTERNAL_KEY)
    request_hash: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(ID)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Channel(Base):
    """A group or channel an integration belongs to (a bot added to it, an account's channel).

    Kept up to date from the provider's membership updates; `connected` marks the ones the
    tenant chose to manage and post to.
    """

    __tablename__ = "channels"
    __table_args__ = (
        UniqueConstraint("integration_id", "external_id"),
        Index("ix_channels_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    integration_id: Mapped[str] = mapped_column(ID, ForeignKey("integrations.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(EXTERNAL_KEY)
    kind: Mapped[str] = mapped_column(String(20))  # channel | group
    title: Mapped[str | None] = mapped_column(String(300))
    username: Mapped[str | None] = mapped_column(String(100))
    member_status: Mapped[str] = mapped_column(
        String(20)
    )  # creator|administrator|member|restricted|left|kicked
    rights: Mapped[dict[str, Any]] = mapped_column(default=dict)
    can_post: Mapped[bool] = mapped_column(default=False)
    connected: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Media(Base):
    """An attachment: uploaded bytes, or a provider file fetched on demand."""

    __tablename__ = "media"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ID, index=True)
    integration_id: Mapped[str | None] = mapped_column(ID)
    mime_type: Mapped[str | None] = mapped_column(String(200))
    file_name: Mapped[str | None] = mapped_column(String(300))
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    content: Mapped[bytes | None] = mapped_column(Blob)
    provider_file_id: Mapped[str | None] = mapped_column(String(400))
    source_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantSequence(Base):
    """The last event sequence number handed out per tenant (its row lock orders appends)."""

    __tablename__ = "tenant_sequences"

    tenant_id: Mapped[str] = mapped_column(ID, primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)


class Event(Base):
    """The tenant event log: every normalized event, numbered per tenant."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("tenant_id", "sequence"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ID, unique=True)
    tenant_id: Mapped[str] = mapped_column(ID)
    sequence: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(60))
    version: Mapped[int] = mapped_column(Integer, default=1)
    integration_id: Mapped[str | None] = mapped_column(ID)
    conversation_id: Mapped[str | None] = mapped_column(ID)
    # Exactly-once: the same cause (raw event + position, message + status) never appends twice.
    dedupe_key: Mapped[str | None] = mapped_column(EXTERNAL_KEY, unique=True)
    data: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
