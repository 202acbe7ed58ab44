"""The sweeper: the database is the source of truth, the queue only a fast path.

Every interval it publishes jobs that are due and were not published recently (their queue
message was lost, or their retry time has come) and jobs whose lease expired (their worker
died). Raw events still pending after `redispatch_after` with no job yet (the job is made when
a worker takes the event up, and their queue message was lost) get their job made and
published. A lost broker message therefore delays work by at most `redispatch_after`; it never
loses it. Several sweepers may run (one per worker process): a double publish is harmless
because a job must be claimed before it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from chatgate.domain.clock import Clock
from chatgate.store.db import Database
from chatgate.store.repositories.jobs import JobStore
from chatgate.workers.pause import wait_until_stopped
from chatgate.workers.queue import QueueItem, WorkQueue

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(
        self,
        db: Database,
        queue: WorkQueue,
        clock: Clock,
        *,
        interval: float = 1.0,
        redispatch_after: timedelta = timedelta(seconds=30),
        batch: int = 2000,
    ) -> None:
        self.db = db
        self.queue = queue
        self.clock = clock
        self.interval = interval
        self.redispatch_after = redispatch_after
        self.batch = batch

    async def sweep_once(self) -> int:
        now = self.clock()
        async with self.db.transaction() as session:
            jobs = JobStore(session)
            # Raw events whose queue message was lost before any worker made their job.
            await jobs.adopt_waiting_raw_events(now - self.redispatch_after, self.batch)
            due = await jobs.due_for_dispatch(now, self.redispatch_after, self.batch)
            await jobs.mark_dispatched([j.id for j in due], now)
        by_topic: dict[str, list[QueueItem]] = defaultdict(list)
        for job in due:
            by_topic[job.kind].append(QueueItem(job.id, job.tenant_id))
        for topic, items in by_topic.items():
            await self.queue.publish(topic, items)
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                published = await self.sweep_once()
                if published:
                    log.debug("sweeper re-dispatched %d jobs", published)
            except SQLAlchemyError as exc:
                log.warning("sweeper could not read jobs: %s", type(exc).__name__)
            await wait_until_stopped(stop, self.interval)
