"""The SQLite ingest store's writer process: `python -m chatgate.services.ingest_sqlite_writer DB`.

It reads batches of raw events from its stdin, inserts each one (one multi-row statement; an
event's inbound job is made later, when a worker takes it up) and syncs the WAL, telling its stdout
of each step: the commit (with the ids stored new), then the sync. The server's process
(`ingest_sqlite.SqliteIngestStore`) answers the batch's requests after the sync.

Why a process and not a thread: a thread shares the server's GIL, and the busy event loop made
it wait for the GIL after each call into SQLite and each sync, more than half of its time per
batch, while the loop itself kept stopping to hand the GIL over (a futex round trip for almost
every request). With a process of its own, the loop's cost of a batch is one write and one or
two reads of a pipe.

Only the standard library and the modules named below are imported, so it starts in a fraction
of a second; it exits when its stdin closes (the server closed it, or is gone).

Frames, both ways: a kind byte, a little-endian u32 length, then that many bytes.
  to the writer:   B  the batch (`marshal`): its received-at stamp, and its rows as the requests
                      brought them (`ingest_rows.NewRaw`)
  from the writer: C  committed (`marshal` list): per row, the id it was stored under, or None
                      for a duplicate
                   E  not committed: `marshal` (error class name, message)
                   D  the commit is durable (the WAL is synced)
                   F  the sync failed: the message
"""

from __future__ import annotations

import marshal
import os
import signal
import sqlite3
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

from chatgate.domain.ids import new_ids
from chatgate.services.ingest_rows import NewRaw, stored_headers
from chatgate.store.wal_sync import WalFileSync, sync_wal

BATCH, COMMITTED, NOT_COMMITTED, DURABLE, SYNC_FAILED = b"B", b"C", b"E", b"D", b"F"
_HEADER = struct.Struct("<cI")

COLUMNS = 9  # SQLite allows 32,766 parameters per statement
_ROWS_PER_STATEMENT = 1000
_RAW_INSERT = (
    "INSERT OR IGNORE INTO raw_events (id, tenant_id, integration_id, kind, provider_event_id,"
    " headers, body, status, received_at) VALUES "
)


def encode(value: Any) -> bytes:
    return marshal.dumps(value)


def decode(payload: bytes) -> Any:
    """`marshal`, for speed: both ends are our own processes, on a pipe of their own."""
    return marshal.loads(payload)  # noqa: S302 - written by our own server or writer


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Splits a byte stream into frames, whatever the chunks it arrives in."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        frames: list[tuple[bytes, bytes]] = []
        start = 0
        while len(self._buffer) - start >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer, start)
            end = start + _HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append((kind, bytes(self._buffer[start + _HEADER.size : end])))
            start = end
        del self._buffer[:start]
        return frames


def connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # the writer syncs the WAL after each commit
        connection.execute("PRAGMA busy_timeout=10000")
        connection.execute("PRAGMA wal_autocheckpoint=0")  # the server checkpoints (wal_checkpoint.py)
        connection.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        connection.close()
        raise
    return connection


def _placeholders(rows: int) -> str:
    row = "(" + ",".join("?" * COLUMNS) + ")"
    return ",".join([row] * rows)


def insert_values(stamp: str, rows: list[NewRaw]) -> tuple[list[str], list[object]]:
    """New raw ids for the rows, and the INSERT's parameters, row after row."""
    ids = new_ids("raw", len(rows))
    values: list[object] = []
    for raw_id, (tenant, integration, kind, event_id, headers, body) in zip(ids, rows, strict=True):
        values += (
            raw_id,
            tenant,
            integration,
            kind,
            event_id,
            stored_headers(headers),
            body,
            "pending",
            stamp,
        )
    return ids, values


def insert_batch(connection: sqlite3.Connection, stamp: str, rows: list[NewRaw]) -> list[str | None]:
    """Insert the raw events not stored yet; per row, its new id or None (a duplicate). Usually
    all are new, which the row count shows without a query."""
    ids, values = insert_values(stamp, rows)
    if len(rows) <= _ROWS_PER_STATEMENT:
        inserted = connection.execute(_RAW_INSERT + _placeholders(len(rows)), values).rowcount
        if inserted == len(rows):  # the common case: one call, one statement, committed
            return list(ids)
    else:  # larger than one statement takes: one transaction around several
        connection.execute("BEGIN IMMEDIATE")
        try:
            step = _ROWS_PER_STATEMENT * COLUMNS
            for start in range(0, len(values), step):
                chunk = values[start : start + step]
                connection.execute(_RAW_INSERT + _placeholders(len(chunk) // COLUMNS), chunk)
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
    return [raw_id if raw_id in found else None for raw_id in ids]


def _read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd`, or None at its end."""
    parts: list[bytes] = []
    while size:
        part = os.read(fd, size)
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(
    path: str, *, read_fd: int = 0, write_fd: int = 1, sync_file: Callable[[str], None] = sync_wal
) -> None:
    """Store and sync each batch read from `read_fd` until it ends, telling `write_fd`."""
    sync = WalFileSync(path, sync_file)
    connection: sqlite3.Connection | None = None
    while (header := _read_exactly(read_fd, _HEADER.size)) is not None:
        kind, length = _HEADER.unpack(header)
        payload = _read_exactly(read_fd, length)
        if payload is None or kind != BATCH:
            break
        try:
            connection = connection or connect(path)
            stored = insert_batch(connection, *decode(payload))
        except Exception as exc:  # noqa: BLE001 - told to the server, which answers the batch's requests
            if connection is not None and not isinstance(exc, sqlite3.IntegrityError):
                connection.close()  # the next batch starts from a fresh connection
                connection = None
            _write_all(write_fd, frame(NOT_COMMITTED, encode((type(exc).__name__, str(exc)))))
            continue
        _write_all(write_fd, frame(COMMITTED, encode(stored)))
        try:
            sync()
        except Exception as exc:  # noqa: BLE001 - the server answers 503; the provider's retry meets a duplicate
            _write_all(write_fd, frame(SYNC_FAILED, repr(exc).encode()))
            continue
        _write_all(write_fd, frame(DURABLE))
    if connection is not None:
        connection.close()


def command(path: str) -> list[str]:
    """How the server starts the writer for the database file `path`."""
    return [sys.executable, "-m", "chatgate.services.ingest_sqlite_writer", path]


def ignore_stop_signals() -> None:
    """The server stops the writer by closing its stdin, once the batches in flight are
    answered; a Ctrl-C or a service manager's SIGTERM to the whole group must not cut them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def yield_to_the_server() -> None:
    """Linux: run as SCHED_BATCH, so that a batch written to this process's pipe does not
    preempt the server's event loop on the CPU it runs on; the batch waits for a free CPU or the
    loop's turn instead. Each batch woke it, and the loop sat in its `write` until the insert
    was done (py-spy: 4.7 % of the loop's samples in the end-to-end bench). Kept as is where the
    system refuses (another OS, a sandbox)."""
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None:
        return
    try:
        os.sched_setscheduler(0, batch, os.sched_param(0))
    except OSError:
        return


def main(argv: Sequence[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m chatgate.services.ingest_sqlite_writer DATABASE_FILE")
    ignore_stop_signals()
    yield_to_the_server()
    serve(argv[0])


if __name__ == "__main__":
    main(sys.argv[1:])
