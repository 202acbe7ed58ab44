"""jobs without the subject index

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 09:10:00

No statement looks jobs up by their subject (a job is found by its id, and its subject by the
subject's own key), while every job ever made, one per inbound event, send and delivery, paid
for the index: about 1.4 us of the ingest writer's ~19 us per event (see docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_subject_id")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_subject_id", ["subject_id"], unique=False)
