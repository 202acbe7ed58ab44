"""The embedded default's ingest store: each batch written by a process of its own.

A batch of raw events goes to the writer process (`ingest_sqlite_writer.py`) as one frame on a
pipe, as the requests brought them; the writer gives them their ids and stored form, inserts
them as one multi-row `INSERT OR IGNORE` (a TEMP trigger on its connection adds each new event's
inbound job in the same statement), tells the commit, syncs the WAL and tells that. The rows'
B-tree work (nine per event) and the sync run beside the event loop, and, unlike on a thread,
without ever taking the server's GIL from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar, cast

from chatgate.domain.errors import ServiceUnavailable
from chatgate.services import ingest_sqlite_writer as writer
from chatgate.services.ingest_rows import Committed, NewRaw, StoredIds
from chatgate.store.sqlite_gate import SqliteWriteGate

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def _stamp(value: datetime) -> str:
    """The text form SQLAlchemy's SQLite DATETIME stores (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")  # strftime's, faster


def batch_payload(rows: Sequence[NewRaw], now: datetime) -> bytes:
    """The batch as the writer's `marshal` carries it: the time it was received, and its rows.
    Usually they are plain `str`, `bytes` and `dict` already; any other type (a StrEnum kind, a
    bytearray body, a read-only headers mapping) is made one."""
    stamp = _stamp(now)
    try:
        return writer.encode((stamp, rows))
    except ValueError:  # marshal refuses subclasses of its types
        plain = [
            (str(tenant), str(integration), str(kind), str(event_id), dict(headers), bytes(body))
            for tenant, integration, kind, event_id, headers, body in rows
        ]
        return writer.encode((stamp, plain))


@dataclass(slots=True)
class _Batch:
    committed: asyncio.Future[StoredIds]
    durable: asyncio.Future[None]


class _WriterPipe(asyncio.SubprocessProtocol):
    """The server's end of one writer process: batches sent in order, and its answers settled
    on each batch's futures. The writer tells commits (or failures to commit) in the order the
    batches were sent, and syncs in the same order, each after its batch's commit; a commit
    and the sync of an earlier batch may come in either order."""

    def __init__(self) -> None:
        self.transport: asyncio.SubprocessTransport | None = None
        self.exited = False  # the writer is gone, or can no longer answer
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._frames = writer.FrameReader()
        self._uncommitted: deque[_Batch] = deque()  # sent, their commit not told yet
        self._unsynced: deque[_Batch] = deque()  # committed, their sync not told yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def send(self, payload: bytes, batch: _Batch) -> None:
        pipe = self.transport.get_pipe_transport(0) if self.transport is not None else None
        stdin = cast(asyncio.WriteTransport | None, pipe)
        if self.exited or stdin is None or stdin.is_closing():
            raise ServiceUnavailable("the ingest writer process has stopped; retry")
        data = writer.frame(writer.BATCH, payload)
        self._uncommitted.append(batch)
        stdin.write(data)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:  # its stderr (a warning, a traceback): told to the log, not read as answers
            log.warning("the ingest writer process wrote: %s", data.decode(errors="replace").rstrip())
            return
        for kind, payload in self._frames.feed(data):
            about = self._uncommitted if kind in (writer.COMMITTED, writer.NOT_COMMITTED) else self._unsynced
            if not about:
                log.error("the ingest writer answered a batch it was not sent (%r)", kind)
                continue
            batch = about.popleft()
            if kind == writer.COMMITTED:
                _settle(batch.committed, writer.decode(payload))
                self._unsynced.append(batch)
            elif kind == writer.NOT_COMMITTED:
                name, message = writer.decode(payload)
                _settle(batch.committed, _not_committed(name, message))
            elif kind == writer.DURABLE:
                _settle(batch.durable, None)
            else:  # SYNC_FAILED: committed, durability unknown; the provider's retry is a duplicate
                log.error("syncing the SQLite WAL failed: %s", payload.decode(errors="replace"))
                _settle(batch.durable, ServiceUnavailable("the database could not be synced to disk; retry"))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:  # its stdout: whatever it does now, it cannot answer
            self._stopped()

    def process_exited(self) -> None:
        self._stopped()
        if not self.gone.done():
            self.gone.set_result(None)

    def _stopped(self) -> None:
        self.exited = True
        error = ServiceUnavailable("the ingest writer process stopped; retry")
        for waiting in (self._uncommitted, self._unsynced):
            while waiting:
                batch = waiting.popleft()
                _settle(batch.committed, error)  # stored or not: the provider's retry will tell
                _settle(batch.durable, error)

    async def aclose(self) -> None:
        if self.transport is None:
            return
        stdin = self.transport.get_pipe_transport(0)
        if stdin is not None:
            stdin.close()  # the writer finishes what it was sent and exits
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.gone), 10)
        self.discard()

    def discard(self) -> None:
        """Let go of the process: killed if it still runs (it can no longer answer), its pipes
        closed."""
        if self.transport is None:
            return
        if self.transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self.transport.kill()
        self.transport.close()


def _not_committed(name: str, message: str) -> BaseException:
    if name == "IntegrityError":  # a row the database refused: the writer stores the others alone
        return sqlite3.IntegrityError(message)
    log.error("the ingest writer could not store a batch: %s: %s", name, message)
    return sqlite3.OperationalError(f"{name}: {message}")


def _settle(future: asyncio.Future[_T], outcome: _T | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class SqliteIngestStore:
    """Stores each batch through the writer process, while the event loop holds the process's
    write gate for it (the loop's own SQLite writers queue behind it instead of meeting a busy
    database). The writer syncs the WAL before the batch's requests are answered; the gate is
    free meanwhile. The writer is started with the first batch, and again after it stopped
    (the batches it had are answered 503: their providers retry, and meet a duplicate if it
    had stored them)."""

    # Two batches in flight: the next one is formed and queued while the last one syncs. The
    # writer stores them one after another: a burst is not split, and batches leave at the loop's
    # next turn (eager starts, one webhook each at 500/s, raised the e2e's latency).
    connections = 2
    parallel = False
    constraint_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def __init__(
        self, path: str, *, gate: SqliteWriteGate | None = None, command: Sequence[str] | None = None
    ) -> None:
        self.path = path
        self.gate = gate or SqliteWriteGate()  # share the Database's, so its writers queue with ours
        self.command = list(command) if command is not None else writer.command(path)
        self._pipe: _WriterPipe | None = None  # started by the first batch (in the gate)

    async def store(self, rows: list[NewRaw], now: datetime, committed: Committed | None = None) -> StoredIds:
        loop = asyncio.get_running_loop()
        payload = batch_payload(rows, now)
        batch = _Batch(loop.create_future(), loop.create_future())
        async with self.gate.held_async(urgent=True):
            pipe = await self._writer()
            pipe.send(payload, batch)
            try:
                stored = await asyncio.shield(batch.committed)
            except asyncio.CancelledError:
                # The gate stays held until the writer has committed the batch.
                await asyncio.wait([batch.committed])
                raise
        if committed is not None:
            committed(stored)
        await batch.durable  # the gate is free meanwhile: others commit while the WAL syncs
        return stored

    async def _writer(self) -> _WriterPipe:
        pipe = self._pipe
        if pipe is not None and not pipe.exited:
            return pipe
        if pipe is not None:
            log.warning("the ingest writer process stopped; starting another")
            pipe.discard()
            self._pipe = None
        try:
            _, pipe = await asyncio.get_running_loop().subprocess_exec(
                _WriterPipe, *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            log.exception("could not start the ingest writer process")
            raise ServiceUnavailable("the ingest writer process could not start; retry") from exc
        self._pipe = pipe
        return pipe

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid, while it runs."""
        pipe = self._pipe
        if pipe is None or pipe.exited or pipe.transport is None:
            return None
        return pipe.transport.get_pid()

    async def aclose(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            await pipe.aclose()
