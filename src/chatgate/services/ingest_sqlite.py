"""The embedded default's ingest store: each batch written by a process of its own.

A batch of raw events goes to the writer process (`ingest_sqlite_writer.py`) as one frame on a
pipe; the writer inserts it as one multi-row `INSERT OR IGNORE` (a TEMP trigger on its
connection adds each new event's inbound job in the same statement), tells the commit, syncs
the WAL and tells that. The rows' B-tree work (nine per event) and the sync run beside the
event loop, and, unlike on a thread, without ever taking the server's GIL from it.
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
from chatgate.services.ingest_rows import Committed, Stored, headers_json, inbound_job_id
from chatgate.store.sqlite_gate import SqliteWriteGate

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def _stamp(value: datetime) -> str:
    """The text form SQLAlchemy's SQLite DATETIME stores (naive UTC, microseconds)."""
    return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def raw_event_values(rows: Sequence[dict[str, object]], now: datetime) -> list[object]:
    """The batch's INSERT parameters, row after row, as plain `str` and `bytes` (what the
    writer's `marshal` carries: no enum or other subclass of them)."""
    stamp = _stamp(now)
    values: list[object] = []
    for row in rows:
        values += (
            str(row["id"]),
            str(row["tenant_id"]),
            str(row["integration_id"]),
            str(row["kind"]),
            str(row["provider_event_id"]),
            headers_json(row["headers"]),  # type: ignore[arg-type]
            bytes(row["body"]),  # type: ignore[call-overload]
            "pending",
            stamp,
        )
    return values


@dataclass(slots=True)
class _Batch:
    committed: asyncio.Future[set[str]]  # the raw ids stored new
    durable: asyncio.Future[None]


class _WriterPipe(asyncio.SubprocessProtocol):
    """The server's end of one writer process: batches sent in order, and its answers, which
    come in the same order, settled on each batch's futures. Commits and syncs are told apart:
    batches that share a sync are all told committed before any is told durable."""

    def __init__(self) -> None:
        self.transport: asyncio.SubprocessTransport | None = None
        self.exited = False  # the writer is gone, or can no longer answer
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._frames = writer.FrameReader()
        self._uncommitted: deque[_Batch] = deque()  # sent, not yet committed (or refused)
        self._unsynced: deque[_Batch] = deque()  # committed, not yet durable

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def send(self, values: list[object], batch: _Batch) -> None:
        pipe = self.transport.get_pipe_transport(0) if self.transport is not None else None
        stdin = cast(asyncio.WriteTransport | None, pipe)
        if self.exited or stdin is None or stdin.is_closing():
            raise ServiceUnavailable("the ingest writer process has stopped; retry")
        data = writer.frame(writer.BATCH, writer.encode(values))  # before it is counted as sent
        self._uncommitted.append(batch)
        stdin.write(data)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        for kind, payload in self._frames.feed(data):
            line = self._unsynced if kind in (writer.DURABLE, writer.SYNC_FAILED) else self._uncommitted
            if not line:
                log.error("the ingest writer answered %r for a batch it was not sent", kind)
                continue
            batch = line.popleft()
            if kind == writer.COMMITTED:
                self._unsynced.append(batch)
                _settle(batch.committed, set(writer.decode(payload)))
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
        for line in (self._uncommitted, self._unsynced):
            while line:
                batch = line.popleft()
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


class _Turn:
    """The store's hold on the process's write gate, for the batches that joined it: it ends
    (the gate passes on) when the last of them is committed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.started: asyncio.Future[None] = loop.create_future()  # the gate is ours
        self.ended: asyncio.Future[None] = loop.create_future()  # give it back
        self.writing = 0  # batches that joined and are not yet committed (or failed)


class SqliteIngestStore:
    """Stores each batch through the writer process, while the event loop holds the process's
    write gate for it (the loop's own SQLite writers queue behind it instead of meeting a busy
    database). The writer syncs the WAL before the batch's requests are answered; the gate is
    free meanwhile. The writer is started with the first batch, and again after it stopped
    (the batches it had are answered 503: their providers retry, and meet a duplicate if it
    had stored them)."""

    # Two batches side by side: the next one is formed and queued while the last one syncs.
    connections = 2
    constraint_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)

    def __init__(
        self, path: str, *, gate: SqliteWriteGate | None = None, command: Sequence[str] | None = None
    ) -> None:
        self.path = path
        self.gate = gate or SqliteWriteGate()  # share the Database's, so its writers queue with ours
        self.command = list(command) if command is not None else writer.command(path)
        self._pipe: _WriterPipe | None = None  # started by the first batch
        self._spawning: asyncio.Future[_WriterPipe] | None = None
        self._turn: _Turn | None = None
        self._holders: set[asyncio.Task[None]] = set()

    async def store(
        self, rows: list[dict[str, object]], now: datetime, committed: Committed | None = None
    ) -> Stored:
        loop = asyncio.get_running_loop()
        values = raw_event_values(rows, now)
        batch = _Batch(loop.create_future(), loop.create_future())
        turn = self._join(loop)
        try:
            try:
                await asyncio.shield(turn.started)
            except asyncio.CancelledError:
                if not turn.started.cancelled():
                    raise  # we were cancelled, not the turn
                raise ServiceUnavailable("the server is shutting down; retry") from None
            pipe = await self._writer()
            pipe.send(values, batch)
            try:
                new_ids = await asyncio.shield(batch.committed)
            except asyncio.CancelledError:
                # The turn (the gate) lasts until the writer has committed the batch.
                await asyncio.wait([batch.committed])
                raise
        finally:
            self._written(turn)
        stored: Stored = [
            (raw_id, inbound_job_id(raw_id), str(row["tenant_id"]))
            for row in rows
            if (raw_id := str(row["id"])) in new_ids
        ]
        if committed is not None:
            committed(stored)
        await batch.durable  # the gate may be another's meanwhile: others commit while the WAL syncs
        return stored

    def _join(self, loop: asyncio.AbstractEventLoop) -> _Turn:
        """The store's open turn at the gate, or a new one, counting this batch in it. A turn
        lets no more batches in once another writer waits for the gate."""
        turn = self._turn
        if turn is not None and turn.started.done() and self.gate.others_waiting():
            self._close(turn)
            turn = None
        if turn is None:
            turn = self._turn = _Turn(loop)
            holder = asyncio.ensure_future(self._hold(turn))
            self._holders.add(holder)
            holder.add_done_callback(self._holders.discard)
        turn.writing += 1
        return turn

    def _close(self, turn: _Turn) -> None:
        if self._turn is turn:
            self._turn = None  # later batches start the next turn, which waits at the gate

    async def _hold(self, turn: _Turn) -> None:
        """Hold the gate for `turn`, from its start until its last batch is committed."""
        try:
            async with self.gate.held_async(urgent=True):
                turn.started.set_result(None)
                await turn.ended
        finally:
            self._close(turn)
            if not turn.started.done():  # cancelled while waiting for the gate (shutdown)
                turn.started.cancel()

    def _written(self, turn: _Turn) -> None:
        """A batch of `turn` is committed, failed or gone: the turn ends with its last batch."""
        turn.writing -= 1
        if turn.writing > 0:
            if self.gate.others_waiting():
                self._close(turn)
            return
        self._close(turn)
        if not turn.ended.done():
            turn.ended.set_result(None)

    async def _writer(self) -> _WriterPipe:
        """The running writer process; started (once, whoever asks meanwhile) if there is none."""
        pipe = self._pipe
        if pipe is not None and not pipe.exited:
            return pipe
        if self._spawning is None:
            self._spawning = asyncio.ensure_future(self._spawn())
        spawning = self._spawning
        try:
            return await asyncio.shield(spawning)
        finally:
            if spawning.done() and self._spawning is spawning:
                self._spawning = None

    async def _spawn(self) -> _WriterPipe:
        if self._pipe is not None:
            log.warning("the ingest writer process stopped; starting another")
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
