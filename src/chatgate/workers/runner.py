"""The worker runtime: periodic jobs until asked to stop.

The message pipeline's queue consumers join this runtime (issue: durable pipeline); today it
runs housekeeping so `chatgate worker` is a real process that starts, works and stops cleanly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatgate.domain.errors import ChatgateError

if TYPE_CHECKING:
    from chatgate.bootstrap import Container

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[object]]


def housekeeping_jobs(container: Container) -> list[PeriodicJob]:
    return [
        PeriodicJob("purge-refresh-tokens", 3600, container.access.purge_expired_refresh_tokens),
    ]


async def _loop(job: PeriodicJob, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            result = await job.run()
            log.debug("job %s done: %s", job.name, result)
        except ChatgateError as exc:
            log.warning("job %s failed: %s", job.name, exc.message)
        except Exception:
            log.exception("job %s crashed; it runs again next interval", job.name)
        try:
            await asyncio.wait_for(stop.wait(), timeout=job.interval_seconds)
        except TimeoutError:
            continue


async def run_workers(container: Container, stop: asyncio.Event) -> None:
    jobs = housekeeping_jobs(container)
    log.info("worker started with jobs: %s", ", ".join(j.name for j in jobs))
    async with asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(_loop(job, stop))
    log.info("worker stopped")
