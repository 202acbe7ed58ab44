"""Start a task whose first step runs at once, in the call: Python 3.12's eager tasks, for 3.11.

A task made with `create_task` takes its first step in the event loop's next turn, and under load
that turn comes only after the loop has read every socket that is ready. The ingest writer sends
a batch from its task's first step; started eagerly, the batch leaves while the loop is still
reading requests, instead of after all of them (docs/performance.md, "Latest").
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def start_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run `coro` until it first waits, now; return the task that runs the rest (or a future
    already done, when it ended without waiting). Like a task, it runs in a copy of the current
    context, the first step included, so context variables it sets stay its own. Unlike 3.12's
    eager tasks, the first step runs outside any task (or inside the caller's): it must not use
    what binds to the current task (`asyncio.timeout`, `current_task`)."""
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coro.send, None)
    except StopIteration as done:
        ended: asyncio.Future[T] = loop.create_future()
        ended.set_result(done.value)
        return ended
    except Exception as exc:  # noqa: BLE001 # the task's outcome, as a task would hold it
        failed: asyncio.Future[T] = loop.create_future()
        failed.set_exception(exc)
        return failed
    return loop.create_task(_Resumed(coro, waiting_on), context=context)


class _Resumed(Coroutine[Any, Any, T]):
    """The rest of `coro`, which is waiting on `waiting_on`: the task's first step is handed
    that, and from then on `coro` is driven as `await` would drive it. A class, not a generator:
    a task cancelled before its first step throws into it, and that must reach `coro`."""

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, T], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on: Any = waiting_on

    def send(self, value: Any) -> Any:
        waiting_on = self._waiting_on
        if waiting_on is not _NOT_YET:
            self._waiting_on = _NOT_YET
            return waiting_on
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._waiting_on = _NOT_YET
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, T]:
        raise TypeError("a task drives this; it is not awaited")


_NOT_YET = object()
