"""Engine and session factory for the three supported databases."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from chatgate.domain.errors import ConfigurationError, ServiceUnavailable
from chatgate.store import sqlite_inline
from chatgate.store.sqlite_gate import SqliteWriteGate
from chatgate.store.wal_checkpoint import CHECKPOINT_INTERVAL, WalCheckpointer
from chatgate.store.wal_sync import WalSyncer

log = logging.getLogger(__name__)

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg", "mysql+asyncmy", "mysql+aiomysql")


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer. NORMAL: a commit does not fsync on the event
    # loop's thread; `Database.transaction()` awaits the WAL's sync on a thread of its own
    # (wal_sync.py), so an acknowledged write still survives power loss.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Its commits never checkpoint (they run on the event loop's thread): see wal_checkpoint.py.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        driver = url.split("://", 1)[0]
        if driver not in SUPPORTED_DRIVERS:
            raise ConfigurationError(
                f"database URL driver '{driver}' is not supported; use one of {', '.join(SUPPORTED_DRIVERS)}"
            )
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": not driver.startswith("sqlite")}
        if not driver.startswith("sqlite"):
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        else:
            # Connections beyond the pool are closed on return; reopening one costs its PRAGMAs.
            kwargs.update(pool_size=pool_size * 2, max_overflow=pool_size)
        # SQLite keeps the aiosqlite URL users configure, but runs inline (sqlite_inline.py).
        engine_url = (
            f"sqlite+{sqlite_inline.DRIVER}://{url.split('://', 1)[1]}"
            if driver.startswith("sqlite")
            else url
        )
        self.engine: AsyncEngine = create_async_engine(engine_url, **kwargs)
        # SQLite has one writer: the process's write transactions queue at this gate.
        self.write_gate = SqliteWriteGate() if driver.startswith("sqlite") else None
        if driver.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            dialect = self.engine.sync_engine.dialect
            assert isinstance(dialect, sqlite_inline.SQLiteDialect_chatgate_inline)
            dialect.write_gate = self.write_gate
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        # A file database's commits are made durable by one shared syncer (an in-memory one has
        # nothing to sync).
        path = sqlite_file(url)
        self.wal_syncer = WalSyncer(path) if path else None
        self.wal_checkpointer = WalCheckpointer(path) if path else None
        self._checkpointing: asyncio.Task[None] | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on any exception."""
        if self.write_gate is None:
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with self.write_gate.held_async(), self.sessions() as session, session.begin():
            yield session
        if self.wal_syncer is not None:
            await self.wal_syncer.sync()  # durable before the caller learns of the commit

    def start(self) -> None:
        """Start the background work a database needs while the server runs (a SQLite file:
        its WAL checkpoints)."""
        if self.wal_checkpointer is not None and self._checkpointing is None:
            self._checkpointing = asyncio.get_running_loop().create_task(
                self.checkpoint_periodically(), name="sqlite-wal-checkpoints"
            )

    async def checkpoint_periodically(self, interval: float = CHECKPOINT_INTERVAL) -> None:
        """Every `interval` seconds, if the WAL was written since the last time, checkpoint it
        on a worker thread while holding the write gate (wal_checkpoint.py)."""
        checkpointer, gate = self.wal_checkpointer, self.write_gate
        if checkpointer is None or gate is None:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                if checkpointer.written():
                    async with gate.held_async():
                        await _on_a_thread_to_the_end(checkpointer.checkpoint)
            except Exception:  # an OS error on the WAL file: the WAL only grows meanwhile
                log.exception("checkpointing the SQLite WAL crashed; trying again in %g s", interval)

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(f"database is not reachable: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        checkpointing, self._checkpointing = self._checkpointing, None
        if checkpointing is not None:
            checkpointing.cancel()
            await asyncio.wait([checkpointing])
        if self.wal_checkpointer is not None:
            self.wal_checkpointer.close()
        await self.engine.dispose()
        if self.wal_syncer is not None:
            self.wal_syncer.close()


async def _on_a_thread_to_the_end(work: Callable[[], object]) -> None:
    """Run `work` on a worker thread; cancelled meanwhile (shutdown), still wait for it to end
    before giving up: the caller holds the write gate, so no commit goes to the WAL meanwhile."""
    running = asyncio.get_running_loop().run_in_executor(None, work)
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.wait([running])
        raise


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL; None for other databases and in-memory ones."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return None if path in ("", ":memory:") else path
