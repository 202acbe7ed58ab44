"""One SQLite writer at a time within the process, in arrival order, queued instead of polling.

SQLite allows one write transaction per database; a connection that finds it taken sleeps and
retries (1, 2, 5, 10 … ms with `busy_timeout`), and on the inline engine (`sqlite_inline.py`)
that sleep would stop the event loop while the lock's holder, a coroutine on the same loop,
cannot finish. So the process's writers (the ingest batch and every `Database.transaction()`)
take this gate first and wait for it as coroutines. It is first come, first served: a steady
stream of transactions can never starve the ingest batch. Other processes still meet SQLite's
own busy handling.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

# True inside a holder's `held_async()` block (and tasks it starts): the inline SQLite engine
# refuses writes elsewhere, since they would wait for the lock on the loop's thread.
_holding: ContextVar[bool] = ContextVar("sqlite_write_gate_held", default=False)


class SqliteWriteGate:
    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def held_async(self) -> AsyncIterator[None]:
        """Wait for our turn (as a coroutine), hold the gate for the block, pass it on."""
        if self._held or self._waiters:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._pass_on()  # the gate was handed to us as we were cancelled
                raise
        else:
            self._held = True
        holding = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(holding)
            self._pass_on()

    def _pass_on(self) -> None:
        """To the longest waiter still waiting (the gate stays held), or open it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is done: skipped
                waiter.set_result(None)
                return
        self._held = False

    @staticmethod
    def held_here() -> bool:
        """Whether the running code is inside a holder's turn."""
        return _holding.get()
