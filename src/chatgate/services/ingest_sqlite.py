"""The embedded default's ingest store: one stdlib-sqlite3 statement per batch, on a thread.

A batch of raw events goes in as one multi-row `INSERT OR IGNORE`, autocommitted; a TEMP
trigger on the store's own connection adds each new event's inbound job in the same statement.
One statement means one call into SQLite, which releases the GIL for the whole insert and
commit: the rows' B-tree work (nine per event) runs beside the event loop instead of on it,
and the store's thread needs the GIL back only once per batch (a thread that made several
calls had to win it back from the busy loop after each one, up to the 5-ms switch interval
each time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from chatgate.domain.errors import ServiceUnavailable
from chatgate.services.ingest_rows import Committed, Stored, headers_json, inbound_job_id
from chatgate.store.sqlite_gate import SqliteWriteGate
from chatgate.store.wal_sync import WalFileSync, sync_wal

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def _stamp(value: datetime) -> str:
    """The text form SQLAlchemy's SQLite DATETIME stores (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


_COLUMNS = 9  # SQLite allows 32,766 parameters per statement
_ROWS_PER_STATEMENT = 1000
_RAW_INSERT = (
    "INSERT OR IGNORE INTO raw_events (id, tenant_id, integration_id, kind, provider_event_id,"
    " headers, body, status, received_at) VALUES "
)
# On the store's connection only (TEMP): every raw event it inserts gets its inbound job, in
# the same statement. Other connections (the ORM, tools) are not affected.
# The job id is `inbound_job_id(NEW.id)`: 'job_' and the raw id after its 4-character prefix.
_JOB_TRIGGER = (
    "CREATE TEMP TRIGGER IF NOT EXISTS ingest_inbound_job AFTER INSERT ON main.raw_events BEGIN"
    " INSERT INTO jobs (id, kind, tenant_id, subject_id, status, run_after, attempts, dispatched_at,"
    " created_at) VALUES ('job_' || substr(NEW.id, 5), 'inbound',"
    " NEW.tenant_id, NEW.id, 'pending', NEW.received_at, 0, NEW.received_at, NEW.received_at);"
    " END"
)


def _placeholders(rows: int) -> str:
    row = "(" + ",".join("?" * _COLUMNS) + ")"
    return ",".join([row] * rows)


def raw_event_values(rows: Sequence[dict[str, object]], now: datetime) -> list[object]:
    """The batch's INSERT parameters, row after row."""
    stamp = _stamp(now)
    values: list[object] = []
    for row in rows:
        values += (
            row["id"],
            row["tenant_id"],
            row["integration_id"],
            row["kind"],
            row["provider_event_id"],
            headers_json(row["headers"]),  # type: ignore[arg-type]
            row["body"],
            "pending",
            stamp,
        )
    return values


def insert_batch(connection: sqlite3.Connection, values: list[object]) -> set[str]:
    """Insert the raw events not stored yet (and, by the trigger, their jobs); the ids of the
    new ones. Usually all are new, which the row count shows without a query."""
    rows = len(values) // _COLUMNS
    ids = [str(values[i]) for i in range(0, len(values), _COLUMNS)]
    if rows <= _ROWS_PER_STATEMENT:
        inserted = connection.execute(_RAW_INSERT + _placeholders(rows), values).rowcount
        if inserted == rows:  # the common case: one call, one statement, committed
            return set(ids)
    else:  # larger than one statement takes: one transaction around several
        connection.execute("BEGIN IMMEDIATE")
        try:
            step = _ROWS_PER_STATEMENT * _COLUMNS
            for start in range(0, len(values), step):
                chunk = values[start : start + step]
                connection.execute(_RAW_INSERT + _placeholders(len(chunk) // _COLUMNS), chunk)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    found: set[str] = set()
    for start in range(0, len(ids), _ROWS_PER_STATEMENT):
        chunk_ids = ids[start : start + _ROWS_PER_STATEMENT]
        marks = ",".join("?" * len(chunk_ids))  # placeholders only: the ids are bound
        query = "SELECT id FROM raw_events WHERE id IN (" + marks + ")"  # noqa: S608
        found.update(str(row[0]) for row in connection.execute(query, chunk_ids))
    return found


@dataclass(slots=True)
class _Batch:
    loop: asyncio.AbstractEventLoop
    values: list[object]
    committed: asyncio.Future[set[str]]  # the raw ids stored new
    durable: asyncio.Future[None]


class SqliteIngestStore:
    """Stores each batch on a thread of its own, while the event loop holds the process's
    write gate for it (the loop's own SQLite writers queue behind it instead of meeting a busy
    database). The same thread then syncs the WAL (`wal_sync.py`) before the batch's requests
    are answered: the loop learns of the commit and of its sync from the thread directly,
    instead of handing the sync to another thread (each hand-off costs a wake-up and a wait
    for the GIL, a millisecond under load)."""

    # Two batches side by side: the next one is formed and queued while the last one syncs.
    connections = 2
    constraint_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def __init__(
        self,
        path: str,
        *,
        gate: SqliteWriteGate | None = None,
        sync_file: Callable[[str], None] = sync_wal,
    ) -> None:
        self.path = path
        self.gate = gate or SqliteWriteGate()  # share the Database's, so its writers queue with ours
        self._sync_wal = WalFileSync(path, sync_file)
        self._batches: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def store(
        self, rows: list[dict[str, object]], now: datetime, committed: Committed | None = None
    ) -> Stored:
        loop = asyncio.get_running_loop()
        batch = _Batch(loop, raw_event_values(rows, now), loop.create_future(), loop.create_future())
        async with self.gate.held_async(urgent=True):
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="chatgate-ingest", daemon=True)
                self._thread.start()
            self._batches.put(batch)
            try:
                new_ids = await asyncio.shield(batch.committed)
            except asyncio.CancelledError:
                # The gate stays held until the thread has committed the batch.
                await asyncio.wait([batch.committed])
                raise
        stored: Stored = [
            (raw_id, inbound_job_id(raw_id), str(row["tenant_id"]))
            for row in rows
            if (raw_id := str(row["id"])) in new_ids
        ]
        if committed is not None:
            committed(stored)
        await batch.durable  # the gate is free meanwhile: others commit while the WAL syncs
        return stored

    def _serve(self) -> None:
        """The store's thread: each batch committed, then synced, each step told to its loop."""
        connection: sqlite3.Connection | None = None
        while (batch := self._batches.get()) is not None:
            try:
                connection = connection or _connect(self.path)
                new_ids = insert_batch(connection, batch.values)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting batch
                if connection is not None and not isinstance(exc, sqlite3.IntegrityError):
                    connection.close()  # the next batch starts from a fresh connection
                    connection = None
                _tell(batch.loop, batch.committed, exc)
                continue
            _tell(batch.loop, batch.committed, new_ids)
            _tell(batch.loop, batch.durable, self._sync())
        if connection is not None:
            connection.close()

    def _sync(self) -> BaseException | None:
        """fdatasync the WAL: every commit before it is durable (None), or why not."""
        try:
            self._sync_wal()
        except BaseException:  # the batch's requests are answered 503
            log.exception("syncing the SQLite WAL failed")
            return ServiceUnavailable("the database could not be synced to disk; retry")
        return None

    async def aclose(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._batches.put(None)
            await asyncio.get_running_loop().run_in_executor(None, thread.join)


def _tell(loop: asyncio.AbstractEventLoop, future: asyncio.Future[_T], outcome: _T | BaseException) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
        loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future[_T], outcome: _T | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # synced by the WalSyncer, off the loop
        connection.execute("PRAGMA busy_timeout=10000")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute(_JOB_TRIGGER)
    except BaseException:
        connection.close()
        raise
    return connection
