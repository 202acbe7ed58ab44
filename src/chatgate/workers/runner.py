"""The worker runtime: queue consumers with fair schedulers, the sweeper, housekeeping.

`chatgate worker` runs it alone; `chatgate serve` runs it beside the API in embedded mode.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatgate.domain.errors import ChatgateError
from chatgate.workers.fair import FairScheduler
from chatgate.workers.pause import wait_until_stopped
from chatgate.workers.sweeper import Sweeper

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
        PeriodicJob("purge-finished-jobs", 600, container.maintenance.purge_finished_jobs),
        PeriodicJob("purge-idempotency-keys", 600, container.maintenance.purge_expired_idempotency_keys),
        PeriodicJob("webhook-queue-depth", 15, container.delivery_worker.refresh_depth),
        PeriodicJob(
            "telegram-health",
            container.settings.telegram_health_interval_seconds,
            lambda: container.telegram_bots.check_all(container.worker_id),
        ),
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
        await wait_until_stopped(stop, job.interval_seconds)


async def run_workers(container: Container, stop: asyncio.Event) -> None:
    settings = container.settings
    schedulers = {
        "inbound": FairScheduler(
            "inbound",
            batch_handler=container.inbound_processor.handle_batch,
            concurrency=settings.worker_concurrency,
            linger=settings.inbound_batch_linger_ms / 1000,
        ),
        "send": FairScheduler(
            "send",
            container.send_worker.handle,
            prepare=container.send_worker.prepare,
            concurrency=settings.worker_concurrency,
        ),
    }
    # Webhook deliveries mostly wait on tenants' endpoints: many at once, so one slow endpoint
    # cannot hold the others up, and their bookkeeping is grouped into larger batches.
    concurrency = {"deliver": settings.delivery_concurrency}
    for topic, handler in container.extra_consumers().items():
        schedulers[topic] = FairScheduler(
            topic, handler, concurrency=concurrency.get(topic, settings.worker_concurrency)
        )
    sweeper = Sweeper(
        container.db,
        container.queue,
        container.clock,
        interval=settings.sweeper_interval_seconds,
        redispatch_after=settings.redispatch_after,
    )
    jobs = housekeeping_jobs(container)
    log.info("worker %s started: %s", container.worker_id, ", ".join([*schedulers, *(j.name for j in jobs)]))
    tasks: list[asyncio.Task[None]] = []
    for topic, scheduler in schedulers.items():
        tasks.append(asyncio.create_task(scheduler.run(), name=f"{topic}-scheduler"))
        tasks.append(
            asyncio.create_task(container.queue.consume(topic, scheduler.offer), name=f"{topic}-consumer")
        )
    tasks.append(asyncio.create_task(sweeper.run(stop), name="sweeper"))
    tasks.append(asyncio.create_task(container.telegram_poller.run(stop), name="telegram-poller"))
    tasks.append(asyncio.create_task(container.account_runtime.run(stop), name="telegram-accounts"))
    tasks.extend(asyncio.create_task(_loop(job, stop), name=job.name) for job in jobs)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info("worker stopped")
