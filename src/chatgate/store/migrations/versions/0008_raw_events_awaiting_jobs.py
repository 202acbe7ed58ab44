"""raw events that wait for their inbound job

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 09:05:00

The ingest stores a raw event alone; its inbound job is made when a worker first takes it up
(or by the sweeper, should its queue message be lost). The sweeper finds the raw events still
waiting in this index: partial (only pending ones) on SQLite and PostgreSQL; MariaDB has no
partial indexes and holds every raw event in it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_raw_events_pending",
            ["status", "received_at"],
            unique=False,
            sqlite_where=_PENDING,
            postgresql_where=_PENDING,
        )


def downgrade() -> None:
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.drop_index("ix_raw_events_pending")
