"""`WorkQueue` inside one process (the embedded mode): one asyncio queue per topic.

Items are lost when the process stops; that is fine because the database is the source of
truth and the sweeper re-dispatches unfinished jobs after a restart.

`consume` hands the items of a topic to its handler one at a time, awaiting each call. The
handler is expected to return quickly (it buffers the item and does the slow work elsewhere);
a slow handler therefore slows down only its own topic. Several `consume` calls on one topic
share its items (each item goes to exactly one of them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from chatgate.domain.errors import ServiceUnavailable
from chatgate.workers.queue import Handler, QueueItem

log = logging.getLogger(__name__)


# Items kept for a topic nobody in this process consumes (yet): a process whose workers run
# elsewhere (`run_workers_in_api=false`) would otherwise keep every item it ever published.
# Beyond it items are dropped; their jobs are in the database and the sweeper re-dispatches them.
MAX_UNCONSUMED = 10_000


class InProcessQueue:
    def __init__(self, *, max_unconsumed: int = MAX_UNCONSUMED) -> None:
        self._topics: dict[str, asyncio.Queue[QueueItem | None]] = {}
        self._consumers: dict[str, int] = {}
        self._closed = False
        self.max_unconsumed = max_unconsumed
        self.dropped: dict[str, int] = {}  # items dropped per topic for want of a consumer

    def _queue(self, topic: str) -> asyncio.Queue[QueueItem | None]:
        queue = self._topics.get(topic)
        if queue is None:
            queue = self._topics[topic] = asyncio.Queue()
        return queue

    async def start(self) -> None:
        self._closed = False

    def consuming(self, topic: str) -> bool:
        """Whether a consumer of `topic` runs in this process now (items published reach it)."""
        return not self._closed and self._consumers.get(topic, 0) > 0

    async def publish(self, topic: str, items: Sequence[QueueItem]) -> None:
        if self._closed:
            # same contract as the broker: best effort, the sweeper re-dispatches
            log.warning("queue closed: dropped %d item(s) for topic %s", len(items), topic)
            return
        queue = self._queue(topic)
        if not self._consumers.get(topic):
            room = max(0, self.max_unconsumed - queue.qsize())
            if room < len(items):
                self._drop(topic, len(items) - room)
                items = items[:room]
        for item in items:
            queue.put_nowait(item)

    def _drop(self, topic: str, count: int) -> None:
        if not self.dropped.get(topic):
            log.warning(
                "no consumer of topic %s in this process: keeping %d items, dropping the rest "
                "(the sweeper re-dispatches their jobs)",
                topic,
                self.max_unconsumed,
            )
        self.dropped[topic] = self.dropped.get(topic, 0) + count

    async def consume(self, topic: str, handler: Handler) -> None:
        queue = self._queue(topic)
        self._consumers[topic] = self._consumers.get(topic, 0) + 1
        try:
            while not self._closed:
                item = await queue.get()
                if self._closed:
                    return
                if item is None:  # a wake-up left over from an earlier aclose()
                    continue
                try:
                    await handler(item)
                except Exception:
                    # a bad item must not stop the topic; the job row keeps its state
                    log.exception("queue handler failed for topic %s, job %s", topic, item.job_id)
        finally:
            self._consumers[topic] -= 1

    async def check(self) -> None:
        if self._closed:
            raise ServiceUnavailable("the in-process work queue is closed")

    async def aclose(self) -> None:
        self._closed = True
        # wake every waiting consumer so it sees the flag and returns
        for topic, count in self._consumers.items():
            for _ in range(count):
                self._queue(topic).put_nowait(None)

    def pending(self, topic: str) -> int:
        """Items waiting in `topic` (for metrics and tests)."""
        return self._queue(topic).qsize()
