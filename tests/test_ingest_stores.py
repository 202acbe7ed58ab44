"""The ingest stores' group commits: every submission gets its own true answer."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from chatgate.domain.errors import ServiceUnavailable
from chatgate.domain.ids import new_id
from chatgate.services.ingest_postgres import PostgresIngestStore
from chatgate.services.ingest_sqlite import SqliteIngestStore
from chatgate.store.db import sqlite_file
from chatgate.store.models import Job, RawEvent
from tests.conftest import Api, unique
from tests.webhook_helpers import webhook_integration


def _row(tenant_id: str, integration_id: str, event_id: str) -> dict[str, object]:
    return {
        "id": new_id("raw"),
        "tenant_id": tenant_id,
        "integration_id": integration_id,
        "kind": "webhook",
        "provider_event_id": event_id,
        "headers": {"content-type": "application/json"},
        "body": b"{}",
        "status": "pending",
    }


def _count(path: str, sql: str, *params: Any) -> int:
    with sqlite3.connect(path) as connection:
        value: int = connection.execute(sql, params).fetchone()[0]
    return value


async def test_a_batch_with_duplicates_stores_each_new_event_once(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = sqlite_file(sqlite_api.container.settings.effective_database_url)
    assert path is not None
    store = SqliteIngestStore(path, gate=sqlite_api.container.db.write_gate)
    tag = unique("e")
    now = datetime.now(UTC)
    try:
        # Stored before: these three are duplicates in the batch below.
        earlier = [_row(tenant.id, integration["id"], f"{tag}-{i}") for i in range(3)]
        assert len(await store.store(earlier, now)) == 3
        # 40 event ids, each twice in one batch, the three old ones among them.
        burst = [_row(tenant.id, integration["id"], f"{tag}-{i}") for i in range(40)]
        burst += [_row(tenant.id, integration["id"], f"{tag}-{i}") for i in range(40)]
        stored = await store.store(burst, now)
    finally:
        await store.aclose()
    first_ids = {str(row["id"]) for row in burst[3:40]}  # the first of each new pair
    assert {raw_id for raw_id, _, _ in stored} == first_ids
    assert len({job_id for _, job_id, _ in stored}) == 37
    rows = _count(path, "SELECT count(*) FROM raw_events WHERE provider_event_id LIKE ?", f"{tag}-%")
    assert rows == 40
    jobs = _count(
        path,
        "SELECT count(*) FROM jobs WHERE kind = 'inbound' AND subject_id IN "
        "(SELECT id FROM raw_events WHERE provider_event_id LIKE ?)",
        f"{tag}-%",
    )
    assert jobs == 40  # one job per new event, none for a duplicate


async def test_a_store_that_cannot_write_raises_and_recovers(tmp_path: Any) -> None:
    missing = tmp_path / "missing-dir"
    store = SqliteIngestStore(str(missing / "chatgate.db"))
    now = datetime.now(UTC)
    with pytest.raises(sqlite3.OperationalError):
        await store.store([_row("t", "i", "e1")], now)
    # The directory appears (a volume mounted late): the next batch opens a fresh connection.
    missing.mkdir()
    with sqlite3.connect(missing / "chatgate.db") as connection:
        connection.execute(
            "CREATE TABLE raw_events (id TEXT PRIMARY KEY, tenant_id TEXT, integration_id TEXT, kind TEXT,"
            " provider_event_id TEXT, headers TEXT, body BLOB, status TEXT, received_at TEXT,"
            " UNIQUE (integration_id, provider_event_id))"
        )
        connection.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT, tenant_id TEXT, subject_id TEXT, status TEXT,"
            " run_after TEXT, attempts INTEGER, dispatched_at TEXT, created_at TEXT)"
        )
    try:
        assert len(await store.store([_row("t", "i", "e1")], now)) == 1
    finally:
        await store.aclose()


async def test_the_writer_turns_a_failed_commit_into_503(sqlite_api: Api) -> None:
    writer = sqlite_api.container.ingest
    working = writer.row_store
    assert isinstance(working, SqliteIngestStore)
    writer.row_store = SqliteIngestStore("/nonexistent-dir/chatgate.db")
    try:
        with pytest.raises(ServiceUnavailable, match="retry"):
            await writer.submit(
                tenant_id="t",
                integration_id="i",
                kind="webhook",
                provider_event_id="x",
                headers={},
                body=b"{}",
            )
    finally:
        await writer.row_store.aclose()
        writer.row_store = working


async def test_the_writer_answers_a_burst_with_duplicates_on_every_database(api: Api) -> None:
    """Whatever the database (SQLite's inline batch, PostgreSQL's one-statement batch, the
    generic path on MariaDB): concurrent submissions each learn whether they were new."""
    writer = api.container.ingest
    assert isinstance(writer.row_store, PostgresIngestStore) == (api.backend == "postgresql")
    assert isinstance(writer.row_store, SqliteIngestStore) == (api.backend == "sqlite")
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    tag = unique("w")

    async def submit(event_id: str) -> bool:
        return await api.container.ingest.submit(
            tenant_id=tenant.id,
            integration_id=integration["id"],
            kind="webhook",
            provider_event_id=event_id,
            headers={"content-type": "application/json", "authorization": "Bearer secret"},
            body=b'{"type":"message.received"}',
        )

    assert await submit(f"{tag}-0") is True
    burst = [f"{tag}-{i}" for i in range(30)] * 2
    answers = await asyncio.gather(*(submit(e) for e in burst))
    new = [e for e, a in zip(burst, answers, strict=True) if a]
    assert sorted(new) == sorted(f"{tag}-{i}" for i in range(1, 30))  # each new id once; -0 was stored before
    async with api.container.db.sessions() as session:
        rows = (
            await session.execute(
                select(RawEvent.id, RawEvent.headers, RawEvent.received_at).where(
                    RawEvent.provider_event_id.like(f"{tag}-%")
                )
            )
        ).all()
        jobs = (
            await session.execute(
                select(func.count()).select_from(Job).where(Job.subject_id.in_([r.id for r in rows]))
            )
        ).scalar_one()
    assert len(rows) == 30
    assert jobs == 30
    assert all(
        "authorization" not in r.headers and r.headers["content-type"] == "application/json" for r in rows
    )
    assert all(r.received_at.tzinfo is not None for r in rows)
