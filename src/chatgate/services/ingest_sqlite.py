"""The embedded default's ingest store: stdlib sqlite3, one statement per table per batch.

The ORM would spend several statements and unit-of-work bookkeeping per batch; here the whole
batch of raw events goes in as one multi-row `INSERT OR IGNORE` and their jobs as another,
inside one `BEGIN IMMEDIATE … COMMIT` (one fsync). The write lock taken by `BEGIN IMMEDIATE`
makes the duplicate check and the inserts atomic against other writers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from chatgate.domain.ids import new_id
from chatgate.store.sqlite_gate import SqliteWriteGate
from chatgate.store.wal_sync import WalSyncer

# (raw event id, job id, tenant id) of each event stored new
Stored = list[tuple[str, str, str]]
Committed = Callable[[Stored], None]  # told what a batch stored once it is committed


def _stamp(value: datetime) -> str:
    """The text form SQLAlchemy's SQLite DATETIME stores (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


# One statement per batch, not one per row: a multi-row INSERT binds in C, per-row calls pay
# Python's call overhead each time while the event loop waits.
_ROWS_PER_STATEMENT = 1000  # 9 parameters a row; SQLite allows 32,766 per statement
_RAW_INSERT = (
    "INSERT OR IGNORE INTO raw_events (id, tenant_id, integration_id, kind, provider_event_id,"
    " headers, body, status, received_at) VALUES "
)
_JOBS_INSERT = (
    "INSERT INTO jobs (id, kind, tenant_id, subject_id, status, run_after, attempts, dispatched_at,"
    " created_at) VALUES "
)
_HEADERS_JSON = json.JSONEncoder(separators=(",", ":"))


def _placeholders(rows: int, columns: int) -> str:
    row = "(" + ",".join("?" * columns) + ")"
    return ",".join([row] * rows)


def _flat(rows: list[tuple[object, ...]]) -> list[object]:
    return [value for row in rows for value in row]


def _insert_new(connection: sqlite3.Connection, params: list[tuple[object, ...]]) -> set[object]:
    """INSERT OR IGNORE against the unique (integration, provider event id) index; the ids of
    the rows that were new. Usually all are, which `total_changes` shows without a query."""
    before = connection.total_changes
    connection.execute(_RAW_INSERT + _placeholders(len(params), 9), _flat(params))
    ids = [row[0] for row in params]
    if connection.total_changes - before == len(params):
        return set(ids)
    marks = ",".join("?" * len(ids))  # placeholders only: the ids are bound
    found = connection.execute("SELECT id FROM raw_events WHERE id IN (" + marks + ")", ids)  # noqa: S608
    return {row[0] for row in found.fetchall()}


def store_batch(connection: sqlite3.Connection, rows: list[dict[str, object]], now: datetime) -> Stored:
    """Insert the raw events that are new, each with its inbound job, in one transaction."""
    stamp = _stamp(now)
    raw_params: list[tuple[object, ...]] = [
        (
            row["id"],
            row["tenant_id"],
            row["integration_id"],
            row["kind"],
            row["provider_event_id"],
            _HEADERS_JSON.encode(row["headers"]),
            row["body"],
            "pending",
            stamp,
        )
        for row in rows
    ]
    connection.execute("BEGIN IMMEDIATE")
    try:
        new_ids: set[object] = set()
        for start in range(0, len(raw_params), _ROWS_PER_STATEMENT):
            new_ids |= _insert_new(connection, raw_params[start : start + _ROWS_PER_STATEMENT])
        stored: Stored = []
        job_params: list[tuple[object, ...]] = []
        for row in rows:
            if row["id"] not in new_ids:
                continue
            job_id = new_id("job")
            job_params.append(
                (job_id, "inbound", row["tenant_id"], row["id"], "pending", stamp, 0, stamp, stamp)
            )
            stored.append((str(row["id"]), job_id, str(row["tenant_id"])))
        for start in range(0, len(job_params), _ROWS_PER_STATEMENT):
            chunk = job_params[start : start + _ROWS_PER_STATEMENT]
            connection.execute(_JOBS_INSERT + _placeholders(len(chunk), 9), _flat(chunk))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return stored


class SqliteIngestStore:
    """Stores a batch on the event loop's thread, at the process's write gate, then waits for
    the WAL's sync (off the loop, shared with other commits: `wal_sync.py`) before its requests
    are answered.

    Statements inline, not on a thread of their own: a writer thread had to win the GIL back
    from the busy loop after every sqlite3 call (the loop lets go of it only when it blocks or
    after the 5 ms switch interval), which made commits slow and the loop itself spend ~58 µs
    more CPU per request. Inline, a batch of ~30 rows costs ~0.15 ms of statements and a commit
    that only writes the WAL; the fsync runs on the syncer's thread while the loop goes on.
    """

    # Two batches side by side: the next one commits while the last one's sync runs (the
    # statements themselves never interleave: they run without awaiting, at the gate).
    connections = 2
    constraint_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def __init__(
        self, path: str, *, gate: SqliteWriteGate | None = None, syncer: WalSyncer | None = None
    ) -> None:
        self.path = path
        self.gate = gate or SqliteWriteGate()  # share the Database's, so its writers queue with ours
        self._own_syncer = syncer is None
        self.syncer = syncer or WalSyncer(path)  # share the Database's, so their syncs are grouped
        self._connection: sqlite3.Connection | None = None

    async def store(
        self, rows: list[dict[str, object]], now: datetime, committed: Committed | None = None
    ) -> Stored:
        async with self.gate.held_async(urgent=True):
            connection = self._connection or self._open()
            try:
                stored = store_batch(connection, rows, now)
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error:
                self._drop()  # the next batch starts from a fresh connection
                raise
        if committed is not None:
            committed(stored)
        await self.syncer.sync()  # the gate is free meanwhile: the next batch can commit
        return stored

    def _open(self) -> sqlite3.Connection:
        self._connection = _connect(self.path)
        return self._connection

    async def aclose(self) -> None:
        self._drop()
        if self._own_syncer:
            self.syncer.close()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # synced by the WalSyncer, off the loop
    connection.execute("PRAGMA busy_timeout=10000")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection
