"""Housekeeping: finished jobs are purged in short transactions, and only finished old ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, insert, select

from chatgate.domain.ids import new_id
from chatgate.services.maintenance import Maintenance
from chatgate.store.models import IdempotencyKey, Job
from tests.conftest import Api


def job(status: str, *, age: timedelta, finished: bool, tenant_id: str) -> dict[str, Any]:
    created = datetime.now(UTC) - age
    return {
        "id": new_id("job"),
        "kind": "inbound",
        "tenant_id": tenant_id,
        "subject_id": new_id("raw"),
        "status": status,
        "run_after": created,
        "attempts": 1,
        "created_at": created,
        "finished_at": created + timedelta(seconds=1) if finished else None,
    }


async def test_finished_jobs_older_than_a_day_are_purged_in_chunks(quiet: Api) -> None:
    api = quiet
    tenant = await api.tenant()
    old, recent = timedelta(days=2), timedelta(hours=1)
    purged = [job("done", age=old, finished=True, tenant_id=tenant.id) for _ in range(5)]
    purged += [job("dead", age=old, finished=True, tenant_id=tenant.id) for _ in range(2)]
    kept = [job("done", age=recent, finished=True, tenant_id=tenant.id) for _ in range(2)]
    kept += [job("pending", age=old, finished=False, tenant_id=tenant.id)]  # waiting, however old
    kept += [job("running", age=old, finished=False, tenant_id=tenant.id)]
    async with api.container.db.transaction() as session:
        await session.execute(insert(Job), purged + kept)

    deletes: list[str] = []

    def record(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("DELETE"):
            deletes.append(args[2])

    engine = api.container.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert await Maintenance(api.container.db, api.container.clock, chunk=3).purge_finished_jobs() == 7
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(deletes) == 3  # 3 + 3 + 1, each in its own transaction
    async with api.container.db.sessions() as session:
        left = set((await session.execute(select(Job.id).where(Job.tenant_id == tenant.id))).scalars())
    assert left == {row["id"] for row in kept}


async def test_expired_idempotency_keys_are_purged_and_live_ones_kept(quiet: Api) -> None:
    api = quiet
    tenant = await api.tenant()
    now = datetime.now(UTC)

    def key(name: str, expires_in: timedelta) -> dict[str, Any]:
        return {
            "tenant_id": tenant.id,
            "key": name,
            "request_hash": "0" * 64,
            "message_id": new_id("msg"),
            "expires_at": now + expires_in,
            "created_at": now,
        }

    rows = [key(f"old-{n}", -timedelta(minutes=1)) for n in range(4)]
    rows += [key(f"live-{n}", timedelta(hours=1)) for n in range(2)]
    async with api.container.db.transaction() as session:
        await session.execute(insert(IdempotencyKey), rows)
    maintenance = Maintenance(api.container.db, api.container.clock, chunk=3)
    assert await maintenance.purge_expired_idempotency_keys() == 4
    async with api.container.db.sessions() as session:
        left = set(
            (
                await session.execute(select(IdempotencyKey.key).where(IdempotencyKey.tenant_id == tenant.id))
            ).scalars()
        )
    assert left == {"live-0", "live-1"}
