"""The ingest stores' group commits: every submission gets its own true answer."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from sqlalchemy import func, select

from chatgate.domain.errors import ServiceUnavailable
from chatgate.domain.ids import new_id
from chatgate.services.ingest_sqlite import SqliteIngestStore, StoreFailed, sqlite_path
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


async def test_concurrent_submissions_with_duplicates_get_their_own_answers(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = sqlite_path(sqlite_api.container.settings.effective_database_url)
    assert path is not None
    store = SqliteIngestStore(path)
    stored_batches: list[list[tuple[str, str, str]]] = []
    store.on_stored = stored_batches.append
    tag = unique("e")
    try:
        # Stored before: these three come back as duplicates.
        earlier = [store.submit(_row(tenant.id, integration["id"], f"{tag}-{i}")) for i in range(3)]
        assert await asyncio.gather(*earlier) == [True, True, True]
        # 40 new ids, each submitted twice in the same burst, plus the three old ones again.
        burst = [f"{tag}-{i}" for i in range(40)] + [f"{tag}-{i}" for i in range(40)]
        answers = await asyncio.gather(*(store.submit(_row(tenant.id, integration["id"], e)) for e in burst))
    finally:
        await asyncio.to_thread(store.close)
    by_event: dict[str, list[bool]] = {}
    for event_id, answer in zip(burst, answers, strict=True):
        by_event.setdefault(event_id, []).append(answer)
    for i in range(40):
        expected = [False, False] if i < 3 else [True, False]
        assert by_event[f"{tag}-{i}"] == expected, (i, by_event[f"{tag}-{i}"])
    rows = _count(path, "SELECT count(*) FROM raw_events WHERE provider_event_id LIKE ?", f"{tag}-%")
    assert rows == 40
    jobs = _count(
        path,
        "SELECT count(*) FROM jobs WHERE kind = 'inbound' AND subject_id IN "
        "(SELECT id FROM raw_events WHERE provider_event_id LIKE ?)",
        f"{tag}-%",
    )
    assert jobs == 40  # one job per new event, none for a duplicate
    published = [entry for batch in stored_batches for entry in batch]
    assert len(published) == 40
    assert len({raw_id for raw_id, _, _ in published}) == 40
    assert store.batches <= 1 + 10  # grouped: the burst of 80 shares a few commits


async def test_close_answers_everything_already_submitted(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = sqlite_path(sqlite_api.container.settings.effective_database_url)
    assert path is not None
    store = SqliteIngestStore(path)
    tag = unique("c")
    futures = [store.submit(_row(tenant.id, integration["id"], f"{tag}-{i}")) for i in range(200)]
    await asyncio.to_thread(store.close)
    assert await asyncio.gather(*futures) == [True] * 200
    assert _count(path, "SELECT count(*) FROM raw_events WHERE provider_event_id LIKE ?", f"{tag}-%") == 200


async def test_a_store_that_cannot_write_fails_every_waiting_submission(tmp_path: Any) -> None:
    store = SqliteIngestStore(str(tmp_path / "missing-dir" / "chatgate.db"))
    try:
        futures = [store.submit(_row("t", "i", f"e{i}")) for i in range(5)]
        results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await asyncio.to_thread(store.close)
    assert all(isinstance(r, StoreFailed) for r in results), results


async def test_the_writer_turns_a_failed_commit_into_503(sqlite_api: Api) -> None:
    writer = sqlite_api.container.ingest
    working = writer.sqlite_store
    assert working is not None
    writer.sqlite_store = SqliteIngestStore("/nonexistent-dir/chatgate.db")
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
        await asyncio.to_thread(writer.sqlite_store.close)
        writer.sqlite_store = working


async def test_the_writer_answers_a_burst_with_duplicates_on_every_database(api: Api) -> None:
    """Whatever the database (SQLite's writer thread, PostgreSQL's one-statement batch, the
    generic path on MariaDB): concurrent submissions each learn whether they were new."""
    writer = api.container.ingest
    assert (writer.postgres_store is not None) == (api.backend == "postgresql")
    assert (writer.sqlite_store is not None) == (api.backend == "sqlite")
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
