"""SQLite commits made durable off the event loop (store/wal_sync.py): grouped syncs, and no
caller learns of a commit before the WAL holding it is synced."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from chatgate.domain.errors import ServiceUnavailable
from chatgate.services.ingest import IngestWriter
from chatgate.services.ingest_sqlite import SqliteIngestStore
from chatgate.store.db import sqlite_file
from chatgate.store.wal_sync import WalSyncer, sync_wal
from chatgate.workers.queue import QueueItem
from tests.conftest import Api, TenantHandle, unique
from tests.ingest_writer_sync import WriterSync
from tests.test_ingest_stores import _count, _row
from tests.webhook_helpers import eventually, webhook_integration


class HeldSync:
    """A sync_file that records its calls and, while `hold` is set, blocks until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold = False
        self.fail: OSError | None = None
        self.started = threading.Event()
        self._release = threading.Event()

    def __call__(self, path: str) -> None:
        self.calls += 1
        self.started.set()
        if self.hold:
            assert self._release.wait(10), "the test never released the sync"
        if self.fail is not None:
            raise self.fail

    def release(self) -> None:
        self._release.set()


async def started(held: HeldSync) -> None:
    assert await asyncio.to_thread(held.started.wait, 5)


async def test_requests_made_during_a_sync_share_the_next_one(tmp_path: Path) -> None:
    held = HeldSync()
    held.hold = True
    syncer = WalSyncer(str(tmp_path / "db"), sync_file=held)
    try:
        first = asyncio.create_task(syncer.sync())
        await started(held)
        # These come while the first sync runs: it may have begun before their commits, so
        # they wait for the next one, and share it.
        later = [asyncio.create_task(syncer.sync()) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert not first.done()
        assert not any(task.done() for task in later)
        held.release()
        await asyncio.wait_for(asyncio.gather(first, *later), 5)
        assert held.calls == 2
        assert syncer.rounds == 2
    finally:
        syncer.close()


async def test_a_failed_sync_is_a_503_and_the_next_one_works(tmp_path: Path) -> None:
    held = HeldSync()
    held.fail = OSError(5, "Input/output error")
    syncer = WalSyncer(str(tmp_path / "db"), sync_file=held)
    try:
        with pytest.raises(ServiceUnavailable, match="could not be synced"):
            await syncer.sync()
        held.fail = None
        await syncer.sync()
        assert held.calls == 2
    finally:
        syncer.close()


def test_sync_wal_syncs_the_wal_or_else_the_database_file(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        sync_wal(path)  # no WAL yet: the database file itself
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (v)")
        connection.execute("INSERT INTO t VALUES (1)")
        assert os.path.exists(path + "-wal")
        sync_wal(path)
    finally:
        connection.close()
    with pytest.raises(FileNotFoundError):
        sync_wal(str(tmp_path / "absent.db"))


@contextmanager
def held_syncs(api: Api) -> Iterator[HeldSync]:
    """The API database's syncer replaced by one whose syncs the test holds and releases."""
    db = api.container.db
    path = sqlite_file(api.container.settings.effective_database_url)
    assert path is not None
    assert db.wal_syncer is not None
    held = HeldSync()
    original, db.wal_syncer = db.wal_syncer, WalSyncer(path, sync_file=held)
    try:
        yield held
    finally:
        held.release()
        db.wal_syncer.close()
        db.wal_syncer = original


async def test_a_transaction_returns_only_after_its_commit_is_synced(sqlite_api: Api) -> None:
    db = sqlite_api.container.db
    path = sqlite_file(sqlite_api.container.settings.effective_database_url)
    assert path is not None
    name = unique("lease")
    with held_syncs(sqlite_api) as held:
        held.hold = True

        async def write() -> None:
            async with db.transaction() as session:
                await session.execute(
                    text(
                        "INSERT INTO leases (name, owner, expires_at, acquired_at) VALUES (:n, 'o', :t, :t)"
                    ),
                    {"n": name, "t": datetime.now(UTC).replace(tzinfo=None)},
                )

        task = asyncio.create_task(write())

        async def committed() -> bool:
            return _count(path, "SELECT count(*) FROM leases WHERE name = ?", name) == 1

        # Committed (another connection sees it) but not yet synced: the caller still waits.
        await eventually(committed, timeout=5)
        await asyncio.sleep(0.05)
        assert not task.done()
        # The write gate is free meanwhile: another transaction commits beside the sync.
        async with db.sessions() as session:
            pragma = (await session.execute(text("PRAGMA synchronous"))).scalar_one()
        assert pragma == 1  # NORMAL: the commit itself does not fsync on the loop
        held.release()
        await asyncio.wait_for(task, 5)
        assert held.calls >= 1


async def ingest_target(api: Api, control: Path) -> tuple[TenantHandle, dict[str, Any], str, WriterSync]:
    """A tenant's webhook integration, the database file, and the ingest writer's WAL sync,
    which the test controls."""
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    path = sqlite_file(api.container.settings.effective_database_url)
    assert path is not None
    return tenant, integration, path, WriterSync(control)


async def test_an_ingest_batch_is_answered_only_after_its_sync(sqlite_api: Api, tmp_path: Path) -> None:
    tenant, integration, path, held = await ingest_target(sqlite_api, tmp_path)
    held.hold()
    db = sqlite_api.container.db
    store = SqliteIngestStore(path, gate=db.write_gate, command=held.command(path))
    tag = unique("e")
    now = datetime.now(UTC)
    try:
        first = asyncio.create_task(store.store([_row(tenant.id, integration["id"], f"{tag}-1")], now))
        await held.started()
        await asyncio.sleep(0.05)
        assert not first.done()  # stored, not yet durable: no answer
        assert _count(path, "SELECT count(*) FROM raw_events WHERE provider_event_id = ?", f"{tag}-1") == 1
        # The write gate is free meanwhile: the loop's own transactions commit beside the sync,
        # and the next batch is sent to the writer.
        async with db.transaction() as session:
            await session.execute(text("UPDATE tenants SET name = name WHERE id = :id"), {"id": tenant.id})
        second = asyncio.create_task(store.store([_row(tenant.id, integration["id"], f"{tag}-2")], now))
        await asyncio.sleep(0.05)
        assert not first.done()
        assert not second.done()
        held.release()
        assert len(await asyncio.wait_for(first, 5)) == 1
        assert len(await asyncio.wait_for(second, 5)) == 1
        assert held.calls == 2  # each batch's own sync, after its commit
    finally:
        held.release()
        await store.aclose()


async def ingest_writer(
    api: Api, control: Path
) -> tuple[str, WriterSync, IngestWriter, dict[str, Any], list[QueueItem]]:
    """An IngestWriter on the database file with a WAL sync the test controls, an event for it
    to store, and the inbound jobs it publishes."""
    tenant, integration, path, held = await ingest_target(api, control)
    published: list[QueueItem] = []

    async def publish(topic: str, items: list[QueueItem]) -> None:
        assert topic == "inbound"
        published.extend(items)

    db = api.container.db
    store = SqliteIngestStore(path, gate=db.write_gate, command=held.command(path))
    writer = IngestWriter(db, publish, api.container.clock, row_store=store)
    event = {
        "tenant_id": tenant.id,
        "integration_id": integration["id"],
        "kind": "webhook",
        "provider_event_id": unique("e"),
        "headers": {},
        "body": b"{}",
    }
    return path, held, writer, event, published


async def test_a_failed_sync_answers_503_and_the_retry_finds_the_event_stored(
    sqlite_api: Api, tmp_path: Path
) -> None:
    path, held, writer, event, published = await ingest_writer(sqlite_api, tmp_path)
    held.fail("Input/output error")
    try:
        with pytest.raises(ServiceUnavailable, match="retry"):
            await writer.submit(**event)  # type: ignore[arg-type]
        # Committed, so its job was dispatched at the commit: the worker's own commit is synced
        # before anything leaves the gateway, and that sync covers this one's.
        assert len(published) == 1
        held.fail(None)
        assert await writer.submit(**event) is False  # type: ignore[arg-type]  # the provider's retry: stored once
        count = _count(
            path, "SELECT count(*) FROM raw_events WHERE provider_event_id = ?", event["provider_event_id"]
        )
        assert count == 1
    finally:
        await writer.aclose()


async def test_the_inbound_job_is_dispatched_at_the_commit_and_the_answer_waits_for_the_sync(
    sqlite_api: Api, tmp_path: Path
) -> None:
    _, held, writer, event, published = await ingest_writer(sqlite_api, tmp_path)
    held.hold()
    try:
        answer = asyncio.ensure_future(writer.submit(**event))  # type: ignore[arg-type]
        await held.started()
        await eventually(lambda: len(published) == 1, timeout=5)  # dispatched while the sync runs
        assert not answer.done()  # the provider's answer waits for the sync
        held.release()
        assert await asyncio.wait_for(answer, 5) is True
        assert len(published) == 1  # and not dispatched again
    finally:
        held.release()
        await writer.aclose()
