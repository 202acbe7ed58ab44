"""PostgreSQL's ingest store: a whole batch in one statement, one round trip, one commit.

Through the ORM a batch took four round trips (BEGIN, the duplicate check, the insert, COMMIT),
and under load each waits for the busy event loop to get round to its answer; here the raw
events are inserted by one autocommitted statement on a connection of the ingest writer's own
(their inbound jobs are made when a worker takes them up). `ON CONFLICT DO NOTHING` on the
unique (integration, provider event id) index answers duplicates, also against other processes
inserting the same event.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from chatgate.domain.ids import new_ids
from chatgate.services.ingest_rows import Committed, NewRaw, StoredIds, stored_headers

log = logging.getLogger(__name__)

_STORE = """
INSERT INTO raw_events (id, tenant_id, integration_id, kind, provider_event_id, headers, body, status,
                        received_at)
SELECT id, tenant_id, integration_id, kind, provider_event_id, headers::json, body, 'pending', $8
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[])
    AS t(id, tenant_id, integration_id, kind, provider_event_id, headers, body)
ON CONFLICT (integration_id, provider_event_id) DO NOTHING
RETURNING id
"""


def asyncpg_dsn(url: str) -> str | None:
    """The plain `postgresql://` DSN asyncpg takes, for a `postgresql+asyncpg://` URL."""
    parsed = make_url(url)
    if parsed.drivername != "postgresql+asyncpg":
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresIngestStore:
    """A few connections of its own, so batches commit side by side: while one waits for its
    fsync, the next is already on its way."""

    constraint_errors: tuple[type[BaseException], ...] = (asyncpg.IntegrityConstraintViolationError,)
    parallel = True  # each connection's batch is stored by a backend of its own

    def __init__(self, dsn: str, *, connections: int = 2) -> None:
        self.dsn = dsn
        self.connections = connections
        self._idle: list[Any] = []  # asyncpg.Connection (untyped library)
        self._open: list[Any] = []

    async def store(self, rows: list[NewRaw], now: datetime, committed: Committed | None = None) -> StoredIds:
        connection = self._idle.pop() if self._idle else await self._connect()
        stamp = now.astimezone(UTC).replace(tzinfo=None)  # naive UTC, as UTCDateTime stores it
        ids = new_ids("raw", len(rows))
        tenants, integrations, kinds, event_ids, headers, bodies = zip(*rows, strict=True)
        try:
            found = await connection.fetch(
                _STORE,
                ids,
                tenants,
                integrations,
                kinds,
                event_ids,
                [stored_headers(h) for h in headers],
                bodies,
                stamp,
            )
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
            self._open.remove(connection)
            connection.terminate()  # the next batch opens a fresh one
            raise
        except BaseException:
            self._idle.append(connection)
            raise
        self._idle.append(connection)
        new = {r[0] for r in found}
        stored: StoredIds = [raw_id if raw_id in new else None for raw_id in ids]
        if committed is not None:
            committed(stored)  # durable already: PostgreSQL's commit waited for its WAL flush
        return stored

    async def _connect(self) -> Any:
        # In a task of its own: a batch may be sent from an eager first step (workers/eager.py),
        # outside any task or inside a caller's, and asyncpg's connect timeout needs a task,
        # which it would cancel.
        connection = await asyncio.ensure_future(asyncpg.connect(self.dsn, timeout=10))
        self._open.append(connection)
        return connection

    async def aclose(self) -> None:
        opened, self._open, self._idle = self._open, [], []
        for connection in opened:
            if connection.is_closed():
                continue
            try:
                await connection.close(timeout=5)
            except (asyncpg.PostgresError, OSError, TimeoutError):
                connection.terminate()
