"""One SQLite writer at a time within the process, in arrival order, queued instead of polling.

SQLite allows one write transaction per database; a connection that finds it taken sleeps and
retries (1, 2, 5, 10 … ms with `busy_timeout`), so under steady writes every collision costs
milliseconds and a waiter can lose the race again and again. The process's writers (the ingest
thread and the ORM's transactions) take this gate first. It is a ticket lock: writers go in the
order they arrived, so a steady stream of transactions can never starve the ingest thread (a
plain lock lets whoever asks at the right moment barge ahead of a waiter being woken). Other
processes still meet SQLite's own busy handling.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

# True inside an async holder's `held_async()` block (and tasks it starts): the inline SQLite
# engine refuses writes elsewhere, since they would wait for the lock on the loop's thread.
_holding: ContextVar[bool] = ContextVar("sqlite_write_gate_held", default=False)


class SqliteWriteGate:
    def __init__(self, *, max_async_waiters: int = 64) -> None:
        self._turns = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()  # tickets whose holder gave up before its turn
        self._waiters = ThreadPoolExecutor(max_workers=max_async_waiters, thread_name_prefix="sqlite-gate")

    def _take_ticket(self) -> int:
        with self._turns:
            ticket = self._next_ticket
            self._next_ticket += 1
            return ticket

    def _wait_for_turn(self, ticket: int) -> None:
        with self._turns:
            while self._serving != ticket:
                self._turns.wait()

    def _is_turn(self, ticket: int) -> bool:
        with self._turns:
            return self._serving == ticket

    def _release(self) -> None:
        with self._turns:
            self._serving += 1
            self._skip_abandoned()

    def _abandon(self, ticket: int) -> None:
        with self._turns:
            self._abandoned.add(ticket)
            self._skip_abandoned()

    def _skip_abandoned(self) -> None:
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._turns.notify_all()

    @contextmanager
    def held(self) -> Iterator[None]:
        """For threads: block until it is our turn."""
        self._wait_for_turn(self._take_ticket())
        try:
            yield
        finally:
            self._release()

    @asynccontextmanager
    async def held_async(self) -> AsyncIterator[None]:
        """For the event loop: wait on a helper thread only when someone is ahead of us."""
        ticket = self._take_ticket()
        if not self._is_turn(ticket):
            waiting = asyncio.get_running_loop().run_in_executor(self._waiters, self._wait_for_turn, ticket)
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:
                # Our turn still comes (or, if the wait never started, our ticket is skipped):
                # pass it straight on, or everyone behind us waits.
                waiting.add_done_callback(
                    lambda done: self._abandon(ticket) if done.cancelled() else self._release()
                )
                raise
        holding = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(holding)
            self._release()

    @staticmethod
    def held_here() -> bool:
        """Whether the running code is inside an async holder's turn."""
        return _holding.get()

    def close(self) -> None:
        self._waiters.shutdown(wait=False, cancel_futures=True)
