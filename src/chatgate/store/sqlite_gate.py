"""One SQLite writer at a time within the process, queued instead of polling.

SQLite allows one write transaction per database; a connection that finds it taken sleeps and
retries (1, 2, 5, 10 … ms with `busy_timeout`), so under steady writes every collision costs
milliseconds and a waiter can lose the race again and again. The process's writers (the ingest
thread and the ORM's transactions) take this gate first: a waiter sleeps on the lock itself
and wakes the moment the writer before it is done. Other processes still meet SQLite's own
busy handling.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager


class SqliteWriteGate:
    def __init__(self, *, max_async_waiters: int = 64) -> None:
        self._lock = threading.Lock()
        self._waiters = ThreadPoolExecutor(max_workers=max_async_waiters, thread_name_prefix="sqlite-gate")

    @contextmanager
    def held(self) -> Iterator[None]:
        """For threads: block until the gate is ours."""
        with self._lock:
            yield

    @asynccontextmanager
    async def held_async(self) -> AsyncIterator[None]:
        """For the event loop: wait on a helper thread only when the gate is taken."""
        if not self._lock.acquire(blocking=False):
            waiting = asyncio.get_running_loop().run_in_executor(self._waiters, self._lock.acquire)
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:
                # The helper thread will still get the gate: hand it straight back then.
                waiting.add_done_callback(lambda _: self._lock.release())
                raise
        try:
            yield
        finally:
            self._lock.release()

    def close(self) -> None:
        self._waiters.shutdown(wait=False, cancel_futures=True)
