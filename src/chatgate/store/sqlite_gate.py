"""One SQLite writer at a time within the process, in arrival order, queued instead of polling.

SQLite allows one write transaction per database; a connection that finds it taken sleeps and
retries (1, 2, 5, 10 … ms with `busy_timeout`), and on the inline engine (`sqlite_inline.py`)
that sleep would stop the event loop while the lock's holder, a coroutine on the same loop,
cannot finish. So the process's writers (the ingest batch and every `Database.transaction()`)
take this gate first and wait for it as coroutines, first come, first served, except that the
ingest batch (providers wait for its commit) is served before the others, never twice in a
row while others wait. Other processes still meet SQLite's own busy handling.
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
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._last_urgent = False  # the gate's latest turn went to an urgent waiter

    @asynccontextmanager
    async def held_async(self, *, urgent: bool = False) -> AsyncIterator[None]:
        """Wait for our turn (as a coroutine), hold the gate for the block, pass it on.

        `urgent` (the ingest batch, whose requests wait for the commit) goes before the other
        waiters, but never twice in a row while others wait: it waits for at most one of them,
        and they cannot be starved."""
        if self._held:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            (self._urgent if urgent else self._waiters).append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._pass_on()  # the gate was handed to us as we were cancelled
                raise
        else:
            self._held = True
            self._last_urgent = urgent
        holding = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(holding)
            self._pass_on()

    def _pass_on(self) -> None:
        """To the next waiter still waiting (the gate stays held), or open it."""
        for line in self._order():
            while line:
                waiter = line.popleft()
                if not waiter.done():  # a cancelled waiter is done: skipped
                    self._last_urgent = line is self._urgent
                    waiter.set_result(None)
                    return
        self._held = False

    def _order(self) -> tuple[deque[asyncio.Future[None]], ...]:
        if self._last_urgent and any(not w.done() for w in self._waiters):
            return (self._waiters, self._urgent)
        return (self._urgent, self._waiters)

    @staticmethod
    def held_here() -> bool:
        """Whether the running code is inside a holder's turn."""
        return _holding.get()
