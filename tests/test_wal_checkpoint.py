"""SQLite's WAL is checkpointed beside the event loop, never inside a commit on its thread."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from chatgate.services import ingest_sqlite_writer
from chatgate.store.db import Database
from chatgate.store.wal_checkpoint import WalCheckpointer, checkpoint_connection
from tests.conftest import Api

BLOB = 32_768  # bytes per row written: eight pages


async def _database(tmp_path: Path) -> tuple[Database, str]:
    path = str(tmp_path / "db.sqlite")
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB)"))
    return db, path


async def _write(db: Database, rows: int = 1) -> None:
    async with db.transaction() as session:
        for _ in range(rows):
            await session.execute(text("INSERT INTO blobs (body) VALUES (randomblob(:n))"), {"n": BLOB})


async def test_commits_on_the_servers_and_the_ingest_writers_connections_never_checkpoint(
    tmp_path: Path,
) -> None:
    db, path = await _database(tmp_path)
    try:
        async with db.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
        writer = ingest_sqlite_writer.connect(path)
        try:
            assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        finally:
            writer.close()
        await _write(db, 200)  # 6 MB: far past the 1,000 pages of SQLite's own checkpoint
        assert os.path.getsize(path) < 1_000_000  # still all in the WAL: no commit copied it
    finally:
        await db.aclose()


async def test_the_periodic_checkpoint_keeps_the_wal_small_under_a_steady_stream_of_commits(
    tmp_path: Path,
) -> None:
    """Commits never stop here; each checkpoint holds the write gate, so it copies the whole
    WAL and the next commit starts it over. Without the gate the WAL grows by all that is
    written (each checkpoint falls behind the commits made while it runs)."""
    db, path = await _database(tmp_path)
    assert db.wal_checkpointer is not None
    checkpointing = asyncio.create_task(db.checkpoint_periodically(interval=0.05))
    written = 0
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5
        while loop.time() < until:
            await _write(db, 4)
            written += 4 * BLOB
    finally:
        checkpointing.cancel()
        await asyncio.wait([checkpointing])
    try:
        assert db.wal_checkpointer.checkpoints >= 5
        assert written > 8_000_000  # enough to tell a bounded WAL from one holding it all
        assert os.path.getsize(path + "-wal") < written / 4
        assert os.path.getsize(path) > written / 2  # the rows are in the database file
    finally:
        await db.aclose()


async def test_a_checkpoint_runs_only_after_new_writes(tmp_path: Path) -> None:
    db, path = await _database(tmp_path)
    checkpointer = WalCheckpointer(path)
    try:
        await _write(db)
        assert checkpointer.written()
        busy, frames, copied = checkpointer.checkpoint() or (1, -1, -2)
        assert (busy, frames) == (0, copied)
        assert frames > 0
        assert not checkpointer.written()
        await _write(db)
        assert checkpointer.written()
    finally:
        checkpointer.close()
        await db.aclose()


async def test_a_failed_checkpoint_is_logged_and_the_next_one_uses_a_new_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, path = await _database(tmp_path)
    attempts: list[str] = []

    def connect(database: str) -> sqlite3.Connection:
        attempts.append(database)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("unable to open database file")
        return checkpoint_connection(database)

    checkpointer = WalCheckpointer(path, connect=connect)
    try:
        await _write(db)
        with caplog.at_level(logging.WARNING, logger="chatgate.store.wal_checkpoint"):
            assert checkpointer.checkpoint() is None
        assert "unable to open database file" in caplog.text
        assert checkpointer.written()  # tried again at the next interval
        assert checkpointer.checkpoint() is not None
        assert checkpointer.checkpoints == 1
        assert attempts == [path, path]
    finally:
        checkpointer.close()
        await db.aclose()


async def test_the_running_server_checkpoints_its_database(sqlite_api: Api) -> None:
    db = sqlite_api.container.db
    assert db.wal_checkpointer is not None
    before = db.wal_checkpointer.checkpoints
    await sqlite_api.tenant()  # some writes
    loop = asyncio.get_running_loop()
    until = loop.time() + 5
    while db.wal_checkpointer.checkpoints == before and loop.time() < until:
        await asyncio.sleep(0.05)
    assert db.wal_checkpointer.checkpoints > before


class _FailsFirst(WalCheckpointer):
    """A WAL file the first look at fails (as a permission error would)."""

    looks = 0

    def written(self) -> bool:
        self.looks += 1
        if self.looks == 1:
            raise PermissionError("permission denied: the WAL file")
        return super().written()


async def test_the_periodic_checkpoint_outlives_an_error_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, path = await _database(tmp_path)
    db.wal_checkpointer = checkpointer = _FailsFirst(path)
    await _write(db)
    checkpointing = asyncio.create_task(db.checkpoint_periodically(interval=0.02))
    try:
        with caplog.at_level(logging.ERROR, logger="chatgate.store.db"):
            for _ in range(100):
                if checkpointer.checkpoints:
                    break
                await asyncio.sleep(0.02)
        assert checkpointer.checkpoints >= 1
        assert "permission denied: the WAL file" in caplog.text
    finally:
        checkpointing.cancel()
        await asyncio.wait([checkpointing])
        await db.aclose()


async def test_stopping_during_a_checkpoint_waits_for_it_and_frees_the_gate(tmp_path: Path) -> None:
    db, path = await _database(tmp_path)
    started = threading.Event()

    def slow_connect(database: str) -> sqlite3.Connection:
        started.set()
        time.sleep(0.3)
        return checkpoint_connection(database)

    db.wal_checkpointer = checkpointer = WalCheckpointer(path, connect=slow_connect)
    await _write(db)
    checkpointing = asyncio.create_task(db.checkpoint_periodically(interval=0.01))
    try:
        while not started.is_set():
            await asyncio.sleep(0.005)
        checkpointing.cancel()
        await asyncio.wait([checkpointing])
        assert checkpointing.cancelled()
        assert checkpointer.checkpoints == 1  # it ended before the task did
        await asyncio.wait_for(_write(db), 5)  # the gate is free again
    finally:
        await db.aclose()
