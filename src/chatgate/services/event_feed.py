"""Reading the tenant event log for consumers: pages, long polls and endless streams.

The database is the source of truth. The notifier only shortens the wait: every waiter also
re-reads the log at least once per `poll_interval`, so a lost notification (another process,
Redis down) delays an event by at most that long and never drops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from chatgate.domain.errors import InvalidInput
from chatgate.domain.events import EventEnvelope, EventType
from chatgate.services.fanout import EventNotifier
from chatgate.store.db import Database
from chatgate.store.models import Event
from chatgate.store.repositories.events import EventLog

STREAM_BATCH = 200  # rows read per query while a stream catches up


def parse_event_types(raw: str | None) -> list[str] | None:
    """`message.received,message.status` -> a validated list; None or blank means every type."""
    if raw is None:
        return None
    names = [part.strip() for part in raw.split(",") if part.strip()]
    known = {t.value for t in EventType}
    for name in names:
        if name not in known:
            raise InvalidInput(
                f"unknown event type '{name}' in 'types'; use any of {', '.join(sorted(known))}",
                details={"field": "types", "value": name},
            )
    return list(dict.fromkeys(names)) or None


def envelope_of(row: Event) -> EventEnvelope:
    return EventEnvelope(
        id=row.event_id,
        type=EventType(row.type),
        version=row.version,
        tenant_id=row.tenant_id,
        sequence=row.sequence,
        integration_id=row.integration_id,
        conversation_id=row.conversation_id,
        created_at=row.created_at,
        data=row.data,
    )


class EventFeed:
    def __init__(self, db: Database, notifier: EventNotifier, *, poll_interval: float = 1.0) -> None:
        self.db = db
        self.notifier = notifier
        self.poll_interval = poll_interval

    async def page(
        self,
        tenant_id: str,
        after: int,
        limit: int,
        types: list[str] | None = None,
        integration_id: str | None = None,
    ) -> list[EventEnvelope]:
        return (await self._read(tenant_id, after, limit, types, integration_id))[1]

    async def wait_page(
        self,
        tenant_id: str,
        after: int,
        limit: int,
        types: list[str] | None = None,
        integration_id: str | None = None,
        *,
        wait_seconds: float,
    ) -> list[EventEnvelope]:
        """A page at once if there is one; otherwise the first page to appear within the wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        scan_from = after
        while True:
            high, envelopes = await self._read(tenant_id, scan_from, limit, types, integration_id)
            remaining = deadline - loop.time()
            if envelopes or remaining <= 0:
                return envelopes
            # Nothing up to `high` matches the filters: wait for the log to pass it, not `after`,
            # or events filtered out would wake us again at once.
            scan_from = max(scan_from, high)
            await self.notifier.wait(tenant_id, scan_from, min(remaining, self.poll_interval))

    async def stream(
        self,
        tenant_id: str,
        after: int,
        types: list[str] | None = None,
        integration_id: str | None = None,
        *,
        heartbeat: float,
    ) -> AsyncGenerator[EventEnvelope | None]:
        """Every matching event after `after`, in sequence order, forever; None when idle for
        `heartbeat` seconds (a chance for the caller to keep its connection alive)."""
        loop = asyncio.get_running_loop()
        scan_from = after
        quiet_until = loop.time() + heartbeat
        while True:
            high, envelopes = await self._read(tenant_id, scan_from, STREAM_BATCH, types, integration_id)
            for envelope in envelopes:
                yield envelope
            if envelopes:
                scan_from = envelopes[-1].sequence
                quiet_until = loop.time() + heartbeat
                if len(envelopes) == STREAM_BATCH:
                    continue  # catching up: more may be there already
            scan_from = max(scan_from, high)
            if loop.time() >= quiet_until:
                yield None
                quiet_until = loop.time() + heartbeat
            wait = min(quiet_until - loop.time(), self.poll_interval)
            await self.notifier.wait(tenant_id, scan_from, max(wait, 0.0))

    async def _read(
        self, tenant_id: str, after: int, limit: int, types: list[str] | None, integration_id: str | None
    ) -> tuple[int, list[EventEnvelope]]:
        # Streams are cancelled when their client leaves, often right after a send, i.e. in a
        # read. A query cancelled midway makes SQLAlchemy discard its connection (and, with
        # aiosqlite, strand a task forever); shielded, the short read finishes on its own.
        read = asyncio.ensure_future(self._query(tenant_id, after, limit, types, integration_id))
        read.add_done_callback(_retrieve_exception)
        return await asyncio.shield(read)

    async def _query(
        self, tenant_id: str, after: int, limit: int, types: list[str] | None, integration_id: str | None
    ) -> tuple[int, list[EventEnvelope]]:
        """The log's high-water mark, then the page. In that order: every event up to the mark
        is committed (appends commit in sequence order), so the page has seen all of them."""
        async with self.db.sessions() as session:
            log = EventLog(session, tenant_id)
            high = await log.last_sequence()
            rows = await log.after(after, limit=limit, types=types, integration_id=integration_id)
        return high, [envelope_of(row) for row in rows]


def _retrieve_exception(task: asyncio.Future[tuple[int, list[EventEnvelope]]]) -> None:
    """A read whose waiter was cancelled may still fail; don't log "never retrieved" for it."""
    if not task.cancelled():
        task.exception()
