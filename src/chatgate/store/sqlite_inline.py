"""SQLite for the async engine, executed on the event loop's own thread.

aiosqlite hands every DBAPI call to a worker thread and back through the loop: measured here
at 554 µs wall and 485 µs CPU per indexed `SELECT`, against 44 µs when `sqlite3` runs it
directly, and a commit with the WAL fsynced (`synchronous=FULL`) takes 0.2 ms. With a dozen
statements per inbound event the hops were most of the pipeline's cost, so this dialect runs
`sqlite3` inline: SQLAlchemy's async API on top (greenlets, no awaits inside the driver), the
pool's waits still asynchronous.

The price is that a statement blocks the event loop while it runs, and so would a lock wait.
Within the process every write runs inside `Database.transaction()`, which holds the write
gate (`sqlite_gate.py`), so a writer never meets another writer of ours at SQLite's lock; a
write outside it is refused here at once (`UngatedSqliteWrite`) instead of stalling the loop in
SQLite's busy handler while the lock's holder — a coroutine on this very loop — cannot run.
Readers never wait in WAL mode. Another process writing the same file would make the loop
wait up to `busy_timeout`: SQLite is the one-process embedded default (docs/operations.md).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import ConnectArgsType, DBAPICursor, ExecutionContext
from sqlalchemy.util.concurrency import await_, in_greenlet

from chatgate.store.sqlite_gate import SqliteWriteGate

DRIVER = "chatgate_inline"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class UngatedSqliteWrite(RuntimeError):
    """A write on the inline SQLite engine outside `Database.transaction()` (a bug of ours)."""


class _InlineCursor(sqlite3.Cursor):
    async def _async_soft_close(self) -> None:
        """SQLAlchemy's async results call this; rows of a sync cursor stay readable as they are."""


class _InlineConnection(sqlite3.Connection):
    def cursor(self, factory: Any = _InlineCursor) -> Any:
        return super().cursor(factory)


class SQLiteDialect_chatgate_inline(SQLiteDialect_pysqlite):
    driver = DRIVER
    is_async = True
    supports_statement_cache = True
    # Set per engine by Database: whose turn it is to write.
    write_gate: SqliteWriteGate | None = None

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        # The async pool: an exhausted pool makes the coroutine wait, not the loop's thread.
        return pool.AsyncAdaptedQueuePool if cls._is_url_file_db(url) else pool.StaticPool

    def create_connect_args(self, url: URL) -> ConnectArgsType:
        args, options = super().create_connect_args(url)
        options["factory"] = _InlineConnection
        return args, options

    def do_execute(
        self,
        cursor: DBAPICursor,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None = None,
    ) -> None:
        self.check_gated(statement)
        cursor.execute(statement, parameters)
        _await_once()

    def do_executemany(
        self,
        cursor: DBAPICursor,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None = None,
    ) -> None:
        self.check_gated(statement)
        cursor.executemany(statement, parameters)
        _await_once()

    def do_execute_no_params(
        self, cursor: DBAPICursor, statement: str, context: ExecutionContext | None = None
    ) -> None:
        self.check_gated(statement)
        cursor.execute(statement)
        _await_once()

    def check_gated(self, statement: str) -> None:
        gate = self.write_gate
        if gate is None or gate.held_here():
            return
        if statement.lstrip()[:7].upper().startswith(_WRITES):
            raise UngatedSqliteWrite(
                "SQLite write outside Database.transaction(): it could stall the event loop; "
                f"statement: {statement[:120]}"
            )


async def _nothing() -> None:
    return None


def _await_once() -> None:
    """Await something that is already done (a greenlet switch, ~1 µs, no trip around the loop):
    `AsyncConnection.execute` insists that a statement awaited at least once."""
    if in_greenlet():
        await_(_nothing())


registry.register(f"sqlite.{DRIVER}", __name__, SQLiteDialect_chatgate_inline.__name__)
