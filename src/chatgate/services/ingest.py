"""Inbound ingest: authenticate a provider's request, store it durably, then answer.

Stores are grouped: requests arriving while a commit is in flight wait for the next one,
so under load many webhooks share one transaction (and one fsync) and throughput approaches
what the HTTP server can do, while each request is still answered only after *its* row is
committed. Duplicates (same integration and provider event id) are answered 200 and stored
once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Protocol

import asyncpg
from sqlalchemy import insert, select, tuple_
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from chatgate.domain.clock import Clock
from chatgate.domain.errors import ServiceUnavailable
from chatgate.domain.ids import new_ids
from chatgate.services.ingest_rows import Committed, NewRaw, StoredIds, headers_to_keep, inbound_job_id
from chatgate.store.db import Database
from chatgate.store.models import RawEvent
from chatgate.workers.eager import start_eagerly
from chatgate.workers.queue import QueueItem

log = logging.getLogger(__name__)

Publish = Callable[[str, list[QueueItem]], Awaitable[None]]


def _queue_items(rows: list[NewRaw], ids: StoredIds) -> list[QueueItem]:
    """The queue items of the rows stored new: their inbound jobs, by the ids those will have
    (`inbound_job_id`; the job is made when a worker takes the event up)."""
    return [
        QueueItem(inbound_job_id(raw_id), row[0]) for row, raw_id in zip(rows, ids, strict=True) if raw_id
    ]


async def _one_by_one(
    rows: list[NewRaw],
    store: Callable[[list[NewRaw]], Awaitable[StoredIds]],
    refused: tuple[type[BaseException], ...],
) -> StoredIds:
    """Each row in a batch of its own, after the database refused one of the batch: a row it
    refuses again counts as not stored (None), and cannot fail its neighbours."""
    stored: StoredIds = []
    for row in rows:
        try:
            stored += await store([row])
        except refused:
            stored.append(None)
    return stored


class RowStore(Protocol):
    """A database's own fast path for a batch of raw events
    (`ingest_sqlite.py`, `ingest_postgres.py`)."""

    connections: int  # batches it may have in flight at once
    # True: the batches in flight are stored in parallel (PostgreSQL's connections), so a burst is
    # split among them, each sent as soon as its share is in (`IngestWriter._take_and_store`).
    # False: one after another (SQLite's one writer), so batches leave at the loop's next turn.
    parallel: bool
    constraint_errors: tuple[type[BaseException], ...]  # a row the database refused

    async def store(self, rows: list[NewRaw], now: datetime, committed: Committed | None = None) -> StoredIds:
        """Store the rows not stored yet, each new one under a new id (status pending);
        return once durable. `committed` is called as soon as they are committed (visible),
        which may be before they are durable."""
        ...

    async def aclose(self) -> None: ...


class Waiter(Protocol):
    """How a submission is answered: an asyncio future (`submit`) or a plain call (`submit_then`)."""

    def done(self) -> bool: ...

    def set_result(self, result: bool, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


Then = Callable[[bool | BaseException], None]  # True: stored new, False: a duplicate; or the error


class _Then:
    """A submission answered by a plain call as soon as its batch is stored. An asyncio future's
    callbacks wait for the loop's next turn, and under load that turn first parses every request
    that has arrived meanwhile: the answer, and so the client's next request, waits for them."""

    __slots__ = ("_then",)

    def __init__(self, then: Then) -> None:
        self._then: Then | None = then

    def done(self) -> bool:
        return self._then is None

    def set_result(self, result: bool, /) -> None:
        self._answer(result)

    def set_exception(self, exception: BaseException, /) -> None:
        self._answer(exception)

    def _answer(self, outcome: bool | BaseException) -> None:
        then, self._then = self._then, None
        if then is None:
            return
        try:
            then(outcome)
        except Exception:  # one answer's failure must not keep its batch's others from theirs
            log.exception("answering an inbound event failed")


_Pending = tuple[NewRaw, Waiter]  # a submission: its row, and how it is answered


def _fail(batch: list[_Pending]) -> None:
    """Answer a batch that could not be stored: 503, retry."""
    error = ServiceUnavailable("the event could not be stored; retry")
    for _, waiter in batch:
        if not waiter.done():
            waiter.set_exception(error)


class IngestWriter:
    """Groups concurrent submissions into one commit: while a batch is being stored, new
    submissions collect in a list, and the next batch takes them all when the commit is done.
    A submission costs a future (or a callback) and an append; the batch, not each request, pays for the hop to
    the store and back (no queue and no task per request)."""

    def __init__(
        self,
        db: Database,
        publish: Publish,
        clock: Clock,
        *,
        max_batch: int = 2000,
        row_store: RowStore | None = None,
    ) -> None:
        self.db = db
        self.row_store = row_store  # None: the generic ORM path (MariaDB/MySQL)
        self.publish = publish
        self.clock = clock
        self.max_batch = max_batch
        self._waiting: list[_Pending] = []
        self._storing: set[asyncio.Future[None]] = set()
        # PostgreSQL commits batches side by side (ON CONFLICT keeps them apart); SQLite has one
        # writer, and the ORM path checks for duplicates before inserting: one batch at a time.
        self.batches_in_flight = self.row_store.connections if self.row_store is not None else 1
        self._soon: asyncio.Handle | None = None  # a batch to start in the loop's next turn
        self._starting: asyncio.Task[None] | None = None  # a batch that has yet to take its rows
        self._rows_in_flight = 0  # in the batches being stored
        self._enough = 1  # rows waiting that start a batch at once (`_take_and_store`)
        self._eager = self.row_store is not None and self.row_store.parallel
        self._closed = False
        self._batches = 0
        self._publishing: set[asyncio.Task[None]] = set()
        self._running_loop: asyncio.AbstractEventLoop | None = None

    @property
    def batches(self) -> int:
        """Commits made so far (the benchmark divides rows by this)."""
        return self._batches

    async def start(self) -> None:
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        while self._storing:
            # `asyncio.wait`, not awaiting a task: a task already done but whose done-callback
            # (which takes it out of `_storing`) has yet to run would be awaited without ever
            # yielding to the loop, and this loop would spin.
            storing = set(self._storing)
            await asyncio.wait(storing)
            self._storing -= {task for task in storing if task.done()}
        error = ServiceUnavailable("the server is shutting down; retry")
        for _, waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(error)
        self._waiting.clear()
        if self.row_store is not None:
            await self.row_store.aclose()

    def submit(
        self,
        *,
        tenant_id: str,
        integration_id: str,
        kind: str,
        provider_event_id: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> asyncio.Future[bool]:
        """Store one raw event: it joins the next batch, and the future answers True when new,
        False for a duplicate (or raises ServiceUnavailable). A plain call returning the future,
        not a coroutine: on the inbound hot path each coroutine between the request and the
        answer is resumed once more when the answer comes."""
        return self.submit_row((tenant_id, integration_id, kind, provider_event_id, headers, body))

    def submit_row(self, row: NewRaw) -> asyncio.Future[bool]:
        """`submit` for a row (tenant, integration, kind, provider event id, headers, body)."""
        future: asyncio.Future[bool] = self._loop().create_future()
        self._enqueue(row, future)
        return future

    def submit_then(self, row: NewRaw, then: Then) -> None:
        """`submit_row`, answered by calling `then` once, within the turn its batch is stored
        (for an HTTP protocol writing the answer itself, api/inbound_protocol.py)."""
        self._enqueue(row, _Then(then))

    def _enqueue(self, row: NewRaw, waiter: Waiter) -> None:
        if self._closed:
            raise ServiceUnavailable("the server is shutting down; retry")
        self._waiting.append((row, waiter))
        if len(self._storing) >= self.batches_in_flight:
            return  # the next batch leaves when one of those is stored
        if not self._eager:
            # One batch after another: its task, made now, takes its first step in the loop's
            # next turn with every row that arrived in this one (one turn, not a call_soon's
            # turn and then the task's).
            if self._starting is None:
                self._start(eagerly=False)
        elif len(self._waiting) >= self._enough:
            self._start(eagerly=True)
        elif self._soon is None:
            self._soon = self._loop().call_soon(self._start_soon)

    def _loop(self) -> asyncio.AbstractEventLoop:
        # Kept: on Python 3.11 each `get_running_loop()` costs a getpid() system call.
        loop = self._running_loop
        if loop is None or loop.is_closed():
            loop = self._running_loop = asyncio.get_running_loop()
        return loop

    def _publish(self, items: list[QueueItem]) -> None:
        # Publishing is best effort (the sweeper covers losses); a slow broker must not
        # delay the next batch's acknowledgements.
        task: asyncio.Task[None] = asyncio.ensure_future(self.publish("inbound", items))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    def _start_soon(self) -> None:
        self._soon = None
        self._start(eagerly=True)

    def _start(self, *, eagerly: bool) -> None:
        """Start a batch with the rows waiting, if a batch may start. Eagerly: its rows are sent
        to the database now, in this call (`start_eagerly`); otherwise in the loop's next turn."""
        if len(self._storing) >= self.batches_in_flight or not self._waiting:
            return
        loop = self._loop()
        if eagerly:
            task = start_eagerly(loop, self._take_and_store())
        else:
            task = self._starting = loop.create_task(self._take_and_store())
        self._storing.add(task)
        task.add_done_callback(self._stored)

    async def _take_and_store(self) -> None:
        self._starting = None
        # The next batch goes out as soon as this one is answered, in the same turn: no turn
        # for this task to end, its done-callback to run and a new task to take its first step.
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            # Of the rows in the server now, a batch's share: when that many are waiting, the
            # next batch starts before the loop has read the rest (`_enqueue`), so the batches
            # in flight share the load instead of one carrying all of it while the others idle.
            self._rows_in_flight += len(batch)
            population = self._rows_in_flight + len(self._waiting)
            self._enough = max(1, population // self.batches_in_flight)
            try:
                await self._store_batch(batch)
            finally:
                self._rows_in_flight -= len(batch)

    def _stored(self, task: asyncio.Future[None]) -> None:
        self._storing.discard(task)
        if self._starting is task:  # cancelled before it took its rows
            self._starting = None
        if not task.cancelled() and task.exception() is not None:  # its batch was answered 503
            log.error("an ingest batch failed", exc_info=task.exception())
        if self._waiting and self._starting is None:
            self._start(eagerly=self._eager)

    async def _store_batch(self, batch: list[_Pending]) -> None:
        try:
            stored = await self._store(batch)
        except (
            SQLAlchemyError,
            OSError,
            sqlite3.Error,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            ServiceUnavailable,  # e.g. stored, but the WAL's sync failed: a retry meets a duplicate
        ) as exc:
            log.exception("could not store %d inbound events: %s", len(batch), type(exc).__name__)
            _fail(batch)
            return
        except BaseException:
            _fail(batch)
            raise
        for (_, waiter), raw_id in zip(batch, stored, strict=True):
            if not waiter.done():
                waiter.set_result(raw_id is not None)

    async def _store(self, batch: list[_Pending]) -> StoredIds:
        """Per row, its new raw id (None: a duplicate); the inbound jobs published."""
        rows = [row for row, _ in batch]
        if self.row_store is not None:
            return await self._store_rows(self.row_store, rows)  # published at its commit
        try:
            stored = await self._store_together(rows)
        except IntegrityError:
            # Another process stored one of these between our check and our insert: fall back
            # to one transaction per event so each gets its own answer.
            stored = await _one_by_one(rows, self._store_together, (IntegrityError,))
        self._publish_rows(rows, stored)
        return stored

    async def _store_rows(self, store: RowStore, rows: list[NewRaw]) -> StoredIds:
        self._batches += 1
        # The jobs are published at the commit, not once it is durable (the provider's answer
        # waits for that): the worker starts meanwhile, and its own commit's sync covers this
        # one's (the WAL is synced in commit order). Should this sync fail, the provider gets a
        # 503, and its retry meets the stored event: a duplicate, answered 200.
        try:
            return await store.store(rows, self.clock(), functools.partial(self._publish_rows, rows))
        except store.constraint_errors:
            # Not a duplicate (those are skipped by the insert) but e.g. an integration deleted
            # meanwhile: store the others one by one, so one event cannot fail its neighbours.
            return await _one_by_one(
                rows,
                lambda one: store.store(one, self.clock(), functools.partial(self._publish_rows, one)),
                store.constraint_errors,
            )

    def _publish_rows(self, rows: list[NewRaw], ids: StoredIds) -> None:
        items = _queue_items(rows, ids)
        if items:
            self._publish(items)

    async def _store_together(self, rows: list[NewRaw]) -> StoredIds:
        now = self.clock()
        self._batches += 1
        ids: StoredIds = []
        async with self.db.transaction() as session:
            keys = {(row[1], row[3]) for row in rows}  # (integration, provider event id)
            existing: set[tuple[str, str]] = set(
                (
                    await session.execute(
                        select(RawEvent.integration_id, RawEvent.provider_event_id).where(
                            tuple_(RawEvent.integration_id, RawEvent.provider_event_id).in_(list(keys))
                        )
                    )
                ).all()
            )
            fresh: list[dict[str, object]] = []
            for (tenant, integration, kind, event_id, headers, body), raw_id in zip(
                rows, new_ids("raw", len(rows)), strict=True
            ):
                if (integration, event_id) in existing:
                    ids.append(None)
                    continue
                existing.add((integration, event_id))
                fresh.append(
                    {
                        "id": raw_id,
                        "tenant_id": tenant,
                        "integration_id": integration,
                        "kind": kind,
                        "provider_event_id": event_id,
                        "headers": headers_to_keep(headers),
                        "body": body,
                        "status": "pending",
                        "received_at": now,
                    }
                )
                ids.append(raw_id)
            if fresh:
                await session.execute(insert(RawEvent), fresh)
        return ids
