"""Group commit for concurrent callers: many `submit` calls, one `run(batch)` at a time.

Callers each await their own result; whatever arrives while a batch is in flight goes into
the next one. Under light load a batch holds one item (no added latency); under heavy load
batches grow to `max_batch`, so one transaction (one fsync) serves many callers.

`run` returns one result per item, in order: a value, or an exception for that caller alone.
If `run` itself raises, every caller of that batch gets the exception.

With `linger`, a batch whose items all `may_wait` (bookkeeping nobody is waiting on, such as
recording delivery outcomes) waits that long for more before it runs: fewer, larger batches
cost less per item. An item that may not wait, arriving meanwhile, ends the wait at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BatchRun = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class GroupBatcher(Generic[T, R]):
    def __init__(
        self,
        name: str,
        run: BatchRun[T, R],
        *,
        max_batch: int = 256,
        linger: float = 0.0,
        may_wait: Callable[[T], bool] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.name = name
        self._run = run
        self.max_batch = max_batch
        self.linger = linger if may_wait is not None else 0.0
        self.may_wait = may_wait
        self._hurry = asyncio.Event()  # set: an item that may not wait has arrived
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0  # how many `run` calls so far (for tests and metrics)
        self.running = False  # a batch is being run right now

    async def submit(self, item: T) -> R:
        """Add `item` to the next batch and wait for its result."""
        return await self.enqueue(item)

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Add `item` to the next batch; the future resolves when its batch has run."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self.linger and self.may_wait is not None and not self.may_wait(item):
            self._hurry.set()
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name=f"{self.name}-batch")
        return future

    async def idle(self) -> None:
        """Wait until every item enqueued so far has run."""
        while self._drainer is not None:
            await asyncio.wait([self._drainer])

    async def _maybe_linger(self) -> None:
        if not self.linger or len(self._pending) >= self.max_batch:
            return
        assert self.may_wait is not None
        if not all(self.may_wait(item) for item, _ in self._pending):
            return
        self._hurry.clear()
        with contextlib.suppress(TimeoutError):  # the linger ran out: the usual way
            await asyncio.wait_for(self._hurry.wait(), self.linger)

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._maybe_linger()
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                self.batches += 1
                self.running = True
                try:
                    results = await self._run([item for item, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                        raise
                    continue
                if len(results) != len(batch):
                    results = [
                        RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} items")
                    ] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # the caller was cancelled meanwhile
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.running = False
            self._drainer = None
            for _, future in self._pending:  # only left over when cancelled
                if not future.done():
                    future.set_exception(RuntimeError(f"{self.name}: batching stopped"))
            if self._pending:
                self._pending.clear()
