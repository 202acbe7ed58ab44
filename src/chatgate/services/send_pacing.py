"""Sends waiting for a rate-limit budget, held in memory and released as the budget allows.

Rescheduling every refused send through the database costs a transaction per refusal, and
sends that come back together are refused together again. Instead, a send refused by a
bucket waits in that bucket's line in this process (its job keeps its lease): one task per
busy bucket spends the budget for the head of the line as soon as the limiter allows and
starts the rest of that send. Later sends for a bucket with a line join its end without
asking the limiter, so the line keeps its order and the limiter is asked once per send.

Lines are bounded (`max_waiting` sends in all, `max_wait` seconds of budget per bucket);
a send that does not fit is rescheduled through the database as before. Waiting sends hold
no executor, so a tenant's rate-limited burst does not hold up other tenants' sends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from chatgate.ratelimit.base import Limit, RateLimiter

log = logging.getLogger(__name__)

Resume = Callable[[], Coroutine[object, object, None]]


@dataclass
class _Line:
    limit: Limit
    waiting: deque[Resume] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class SendPacer:
    def __init__(self, limiter: RateLimiter, *, max_waiting: int = 10_000, max_wait: float = 20.0) -> None:
        self.limiter = limiter
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self._lines: dict[str, _Line] = {}
        self._count = 0
        self._running: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return self._count

    def has_line(self, key: str) -> bool:
        return key in self._lines

    def backlog_seconds(self, key: str) -> float:
        """How long the sends already in the bucket's line will take at its rate."""
        line = self._lines.get(key)
        return 0.0 if line is None else len(line.waiting) / line.limit.rate

    def wait(self, key: str, limit: Limit, resume: Resume) -> bool:
        """Queue `resume` to run once the bucket grants it a token; False when the line is full."""
        line = self._lines.get(key)
        queued = 0 if line is None else len(line.waiting)
        if self._count >= self.max_waiting or (queued + 1) / limit.rate > self.max_wait:
            return False
        if line is None:
            line = self._lines[key] = _Line(limit)
            line.task = asyncio.create_task(self._release(key, line), name=f"send-pacer:{key}")
        line.waiting.append(resume)
        self._count += 1
        return True

    async def _release(self, key: str, line: _Line) -> None:
        try:
            while line.waiting:
                decision = await self.limiter.hit(key, line.limit)
                if not decision.allowed:
                    await asyncio.sleep(max(decision.retry_after, 0.001))
                    continue
                resume = line.waiting.popleft()
                self._count -= 1
                task = asyncio.create_task(resume(), name=f"send-paced:{key}")
                self._running.add(task)
                task.add_done_callback(self._running.discard)
        except Exception:
            log.exception(
                "releasing sends waiting for bucket %s failed; their jobs retry after the lease", key
            )
            self._count -= len(line.waiting)
            line.waiting.clear()
        finally:
            self._lines.pop(key, None)

    async def aclose(self) -> None:
        """Stop releasing; waiting sends keep their leases and are re-dispatched after them."""
        tasks = [line.task for line in self._lines.values() if line.task is not None] + list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lines.clear()
        self._count = 0
