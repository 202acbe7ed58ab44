"""ids and external keys compared as bytes on PostgreSQL

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 04:30:00

Our ids and the keys providers and clients give us (event ids, addresses, chat ids, idempotency
keys) are opaque: their byte order is their only useful order (for ids, the ULID order), and
equality is the same under any deterministic collation. Compared under the database's locale,
every index insert and lookup on them paid the locale's comparison; `COLLATE "C"` compares
bytes (docs/performance.md measured the ingest). PostgreSQL only: SQLite already compares bytes,
and MariaDB's collations are left as they are.

On an existing database this rebuilds the indexes and foreign keys on these columns (the rows
are not rewritten: the type stays varchar), holding each table's lock while it does.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every column of the `ID` and `EXTERNAL_KEY` types at this revision, with its length. Written
# out, not read from the models: a migration describes the schema of its own revision.
COLUMNS: dict[str, list[tuple[str, int]]] = {
    "tenants": [("id", 40)],
    "integrations": [("id", 40), ("tenant_id", 40)],
    "users": [("id", 40), ("tenant_id", 40)],
    "refresh_tokens": [("id", 40), ("tenant_id", 40), ("user_id", 40)],
    "api_keys": [("id", 40), ("tenant_id", 40)],
    "projects": [("tenant_id", 40), ("telegram_send_integration_id", 40)],
    "audit_log": [("tenant_id", 40)],
    "tenant_sequences": [("tenant_id", 40)],
    "jobs": [("id", 40), ("tenant_id", 40), ("subject_id", 40)],
    "raw_events": [("id", 40), ("tenant_id", 40), ("integration_id", 40), ("provider_event_id", 191)],
    "contacts": [("id", 40), ("tenant_id", 40), ("integration_id", 40), ("address", 191)],
    "conversations": [
        ("id", 40),
        ("tenant_id", 40),
        ("integration_id", 40),
        ("external_id", 191),
        ("contact_id", 40),
    ],
    "messages": [
        ("id", 40),
        ("tenant_id", 40),
        ("integration_id", 40),
        ("conversation_id", 40),
        ("contact_id", 40),
        ("provider_message_id", 191),
        ("reply_to_message_id", 40),
    ],
    "idempotency_keys": [("tenant_id", 40), ("key", 191), ("message_id", 40)],
    "channels": [("id", 40), ("tenant_id", 40), ("integration_id", 40), ("external_id", 191)],
    "media": [("id", 40), ("tenant_id", 40), ("integration_id", 40)],
    "events": [
        ("event_id", 40),
        ("tenant_id", 40),
        ("integration_id", 40),
        ("conversation_id", 40),
        ("dedupe_key", 191),
    ],
    "webhook_endpoints": [("id", 40), ("tenant_id", 40)],
    "webhook_deliveries": [
        ("id", 40),
        ("tenant_id", 40),
        ("endpoint_id", 40),
        ("event_id", 40),
        ("conversation_id", 40),
    ],
    "webhook_attempts": [("tenant_id", 40), ("delivery_id", 40)],
}


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        # One statement per table: PostgreSQL rebuilds its indexes and foreign keys once.
        changes = ", ".join(
            f'ALTER COLUMN "{name}" TYPE varchar({length}) COLLATE "{collation}"' for name, length in columns
        )
        op.execute(f'ALTER TABLE "{table}" {changes}')


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
