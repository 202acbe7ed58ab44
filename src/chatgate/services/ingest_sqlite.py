"""The embedded default's ingest store: stdlib sqlite3, group commits on a thread of its own.

Through the async driver every statement hops to a helper thread and back (~135 µs measured)
and through the ORM layer more (~395 µs), all on the event loop that also parses HTTP. Here
one writer thread takes every event submitted so far, stores them in one
`BEGIN IMMEDIATE … COMMIT` (one fsync), hands the outcome back to the event loop with one
callback per batch, and goes straight on with whatever arrived meanwhile: the loop is never
on the path from one commit to the next. The write lock taken by `BEGIN IMMEDIATE` makes the
duplicate check and the inserts atomic against other writers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from chatgate.domain.clock import Clock
from chatgate.domain.ids import new_id
from chatgate.store.sqlite_gate import SqliteWriteGate

log = logging.getLogger(__name__)

# (raw event id, job id, tenant id) of each event stored new
Stored = list[tuple[str, str, str]]


def _stamp(value: datetime) -> str:
    """The text form SQLAlchemy's SQLite DATETIME stores (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def sqlite_path(url: str) -> str | None:
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return None if path in ("", ":memory:") else path


# One statement per batch, not one per row: each sqlite3 call lets go of the GIL and must win it
# back from the busy event loop, which cost ~85 µs per call under load (5 ms for 31 rows).
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


@dataclass(slots=True)
class _Submission:
    row: dict[str, object]
    future: asyncio.Future[bool]
    loop: asyncio.AbstractEventLoop


_STOP = object()
OnStored = Callable[[Stored], None]


class SqliteIngestStore:
    """Owns the writer thread. `submit` is called on the event loop and answers there."""

    def __init__(
        self,
        path: str,
        *,
        clock: Clock | None = None,
        max_batch: int = 2000,
        gate: SqliteWriteGate | None = None,
    ) -> None:
        self.path = path
        self.gate = gate or SqliteWriteGate()  # share the Database's, so its writers queue with ours
        self.clock = clock or (lambda: datetime.now(UTC))
        self.max_batch = max_batch
        self.batches = 0  # commits made, for the benchmark's rows-per-commit figure
        self.on_stored: OnStored | None = None  # runs on the loop, once per batch with new events
        self._inbox: queue.SimpleQueue[_Submission | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, row: dict[str, object]) -> asyncio.Future[bool]:
        """Queue one raw event; the future says True (stored) or False (a duplicate)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if self._thread is None:
            self._start()
        self._inbox.put(_Submission(row, future, loop))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ingest-sqlite", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        stopping = False
        while not stopping:
            first = self._inbox.get()
            if first is _STOP:
                break
            assert isinstance(first, _Submission)
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                assert isinstance(item, _Submission)
                batch.append(item)
            try:
                connection = connection or _connect(self.path)
                with self.gate.held():
                    stored: Stored | BaseException = store_batch(
                        connection, [s.row for s in batch], self.clock()
                    )
                self.batches += 1
            except Exception as exc:  # every waiting request must get an answer: a 503
                log.exception("could not store %d inbound events: %s", len(batch), type(exc).__name__)
                stored = exc
                if connection is not None:
                    connection.close()
                    connection = None  # reconnect for the next batch
            for loop in {s.loop for s in batch}:
                try:
                    loop.call_soon_threadsafe(self._answer, batch, stored, loop)
                except RuntimeError:  # that loop is closed: nobody is waiting there any more
                    continue
        if connection is not None:
            connection.close()

    def _answer(
        self, batch: list[_Submission], stored: Stored | BaseException, loop: asyncio.AbstractEventLoop
    ) -> None:
        if isinstance(stored, BaseException):
            for item in batch:
                if item.loop is loop and not item.future.done():
                    item.future.set_exception(StoreFailed(stored))
            return
        new = {raw_id for raw_id, _, _ in stored}
        mine: set[object] = set()
        for item in batch:
            if item.loop is loop:
                mine.add(item.row["id"])
                if not item.future.done():
                    item.future.set_result(item.row["id"] in new)
        if stored and self.on_stored is not None:
            self.on_stored([entry for entry in stored if entry[0] in mine])

    def close(self) -> None:
        """Store what is queued, then stop the thread (blocking: call it off the loop)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._inbox.put(_STOP)
            thread.join()


class StoreFailed(Exception):
    """The batch holding this event could not be committed (the cause is chained)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}")
        self.__cause__ = cause


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=10000")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection
