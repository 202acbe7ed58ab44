"""open deliveries by status

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 20:05:00

The queue-depth gauge counts the open (pending, failed) deliveries of every endpoint every
15 s; without an index led by status that read every delivery ever made.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_status_endpoint_id", ["status", "endpoint_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_status_endpoint_id")
