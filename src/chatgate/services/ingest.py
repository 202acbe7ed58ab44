"""Inbound ingest: authenticate a provider's request, store it durably, then answer.

Stores are grouped: requests arriving while a commit is in flight wait for the next one,
so under load many webhooks share one transaction (and one fsync) and throughput approaches
what the HTTP server can do, while each request is still answered only after *its* row is
committed. Duplicates (same integration and provider event id) are answered 200 and stored
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import insert, select, tuple_
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from chatgate.domain.clock import Clock
from chatgate.domain.errors import ServiceUnavailable
from chatgate.domain.ids import new_id
from chatgate.services.ingest_sqlite import SqliteIngestStore
from chatgate.store.db import Database
from chatgate.store.models import Job, RawEvent
from chatgate.store.repositories.jobs import job_row
from chatgate.workers.queue import QueueItem

log = logging.getLogger(__name__)

Publish = Callable[[str, list[QueueItem]], Awaitable[None]]
# Credentials are not kept (raw events are shown to admins): Telegram's secret header is one.
_KEEP_HEADERS_EXCLUDED = frozenset(
    {"authorization", "cookie", "proxy-authorization", "x-telegram-bot-api-secret-token"}
)


def headers_to_keep(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in _KEEP_HEADERS_EXCLUDED}


@dataclass
class _Pending:
    raw: dict[str, object]
    future: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class IngestWriter:
    def __init__(
        self,
        db: Database,
        publish: Publish,
        clock: Clock,
        *,
        max_batch: int = 2000,
        sqlite_store: SqliteIngestStore | None = None,
    ) -> None:
        self.db = db
        self.sqlite_store = sqlite_store
        self.publish = publish
        self.clock = clock
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self._publishing: set[asyncio.Task[None]] = (
            set()
        )  # for the benchmark: how many commits served how many events

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.sqlite_store is not None:
            await asyncio.to_thread(self.sqlite_store.close)

    async def submit(
        self,
        *,
        tenant_id: str,
        integration_id: str,
        kind: str,
        provider_event_id: str,
        headers: dict[str, str],
        body: bytes,
    ) -> bool:
        """Store one raw event; True when new, False for a duplicate. Raises ServiceUnavailable."""
        if self._task is None:
            await self.start()
        pending = _Pending(
            {
                "id": new_id("raw"),
                "tenant_id": tenant_id,
                "integration_id": integration_id,
                "kind": kind,
                "provider_event_id": provider_event_id,
                "headers": headers_to_keep(headers),
                "body": body,
                "status": "pending",
            }
        )
        await self._queue.put(pending)
        return await pending.future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                stored = await self._store(batch)
            except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
                log.exception("could not store %d inbound events: %s", len(batch), type(exc).__name__)
                error = ServiceUnavailable("the event could not be stored; retry")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            for item in batch:
                if not item.future.done():
                    item.future.set_result(item.raw["id"] in stored)
            if stored:
                # Publishing is best effort (the sweeper covers losses); a slow broker must not
                # delay the next batch's acknowledgements.
                task: asyncio.Task[None] = asyncio.ensure_future(
                    self.publish("inbound", list(stored.values()))
                )
                self._publishing.add(task)
                task.add_done_callback(self._publishing.discard)

    async def _store(self, batch: list[_Pending]) -> dict[str, QueueItem]:
        if self.sqlite_store is not None:
            self.batches += 1
            fresh = await self.sqlite_store.store([p.raw for p in batch], self.clock())
            return {raw_id: QueueItem(job_id, tenant_id) for raw_id, job_id, tenant_id in fresh}
        try:
            return await self._store_together(batch)
        except IntegrityError:
            # Another process stored one of these between our check and our insert: fall back
            # to one transaction per event so each gets its own answer.
            stored: dict[str, QueueItem] = {}
            for item in batch:
                with contextlib.suppress(IntegrityError):
                    stored.update(await self._store_together([item]))
            return stored

    async def _store_together(self, batch: list[_Pending]) -> dict[str, QueueItem]:
        now = self.clock()
        self.batches += 1
        async with self.db.transaction() as session:
            keys = {(str(p.raw["integration_id"]), str(p.raw["provider_event_id"])) for p in batch}
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
            jobs: list[dict[str, object]] = []
            items: dict[str, QueueItem] = {}
            for pending in batch:
                key = (str(pending.raw["integration_id"]), str(pending.raw["provider_event_id"]))
                if key in existing:
                    continue
                existing.add(key)
                row = {**pending.raw, "received_at": now}
                job = job_row("inbound", str(row["tenant_id"]), str(row["id"]), now)
                fresh.append(row)
                jobs.append(job)
                items[str(row["id"])] = QueueItem(str(job["id"]), str(row["tenant_id"]))
            if fresh:
                await session.execute(insert(RawEvent), fresh)
                await session.execute(insert(Job), jobs)
        return items
