"""lighter job indexes

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 09:10:00

Every job ever made (one per inbound event, send and delivery) pays for each index of the jobs
table, and the ingest writer pays for the inbound ones while webhooks wait for their answer
(see docs/performance.md). Two of those indexes held mostly entries nobody looks for:
- `subject_id`: no statement looks a job up by its subject (a job is found by its id);
- `(status, lease_until)`: only the sweeper's "lease expired" search uses it, and only running
  jobs have a lease. It becomes `(lease_until)` over the jobs that have one (partial on SQLite
  and PostgreSQL; MariaDB has no partial indexes and indexes every job, as before).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEASED = sa.text("lease_until IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_subject_id")
        batch_op.drop_index("ix_jobs_status_lease_until")
        batch_op.create_index(
            "ix_jobs_lease_until",
            ["lease_until"],
            unique=False,
            sqlite_where=_LEASED,
            postgresql_where=_LEASED,
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_lease_until")
        batch_op.create_index("ix_jobs_status_lease_until", ["status", "lease_until"], unique=False)
        batch_op.create_index("ix_jobs_subject_id", ["subject_id"], unique=False)
