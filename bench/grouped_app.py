"""The issue's second reference: "the same bare app with grouped commits".

The bare ASGI app, except that each request's body is stored, durably, before the 200: requests
that arrive together share one transaction (group commit). No routing, no authentication, no
integration, no job: one table of (webhook id, body). What a database's durable write costs an
ASGI app on this machine and nothing else, so chatgate's ingest can be read against it.

- PostgreSQL: asyncpg, one `INSERT … SELECT FROM unnest(…)` per group, autocommit (the server's
  fsync and synchronous_commit as configured), two connections: up to two groups in flight.
- SQLite: the standard library's `sqlite3` on a thread of its own, WAL, `synchronous=FULL`
  (fsync on every commit), one `executemany` and commit per group: one group in flight.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BODY = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
TABLE = "grouped_webhooks"


class _Groups:
    """Collects (id, body) pairs and stores each batch that arrived together in one commit."""

    def __init__(self, slots: int) -> None:
        self._pending: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._free = slots
        self.commits = 0
        self.rows = 0

    async def store(self, key: str, body: bytes) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((key, body, future))
        if self._free:
            self._free -= 1
            asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    await self._write([k for k, _, _ in group], [b for _, b, _ in group])
                except Exception as exc:  # every request of the group sees the failure
                    for _, _, future in group:
                        future.set_exception(exc)
                    continue
                self.commits += 1
                self.rows += len(group)
                for _, _, future in group:
                    future.set_result(None)
        finally:
            self._free += 1

    async def _write(self, keys: list[str], bodies: list[bytes]) -> None:
        raise NotImplementedError

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PostgresGroups(_Groups):
    def __init__(self, dsn: str) -> None:
        super().__init__(slots=2)
        self._dsn = dsn
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg

        self._pool = await asyncpg.create_pool(self._dsn, min_size=2, max_size=2)
        await self._pool.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id text PRIMARY KEY, body bytea NOT NULL)"
        )

    async def _write(self, keys: list[str], bodies: list[bytes]) -> None:
        await self._pool.execute(
            f"INSERT INTO {TABLE} (id, body) SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT DO NOTHING",
            keys,
            bodies,
        )

    async def close(self) -> None:
        await self._pool.close()


class SqliteGroups(_Groups):
    def __init__(self, path: str) -> None:
        super().__init__(slots=1)
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="grouped-sqlite")
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, body BLOB NOT NULL)")
        self._conn = conn

    def _insert(self, rows: list[tuple[str, bytes]]) -> None:
        assert self._conn is not None
        self._conn.execute("BEGIN")
        self._conn.executemany(f"INSERT OR IGNORE INTO {TABLE} (id, body) VALUES (?, ?)", rows)
        self._conn.execute("COMMIT")

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._connect)

    async def _write(self, keys: list[str], bodies: list[bytes]) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._thread, self._insert, list(zip(keys, bodies, strict=True))
        )

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown()


def grouped_app(groups: _Groups) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await groups.open()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await groups.close()
                    print(f"BENCH_GROUPED commits={groups.commits} rows={groups.rows}", flush=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        key = next((v.decode() for k, v in scope["headers"] if k == b"webhook-id"), "")
        await groups.store(key, b"".join(chunks))
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})

    return app
