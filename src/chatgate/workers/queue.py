"""The work-queue interface: in-process (embedded) or RabbitMQ (scaled).

A queue carries only *pointers* to work (`QueueItem`: a job id and its tenant); the jobs
themselves live in the database, which stays the source of truth. So a queue may lose
messages (a broker restart, a crashed consumer): the sweeper re-dispatches any job that is
due and has not been finished, and a job is claimed in the database before it runs, so a
duplicate delivery is harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class QueueItem:
    job_id: str
    tenant_id: str
    # In-process only (never encoded): what the handler would otherwise read when it claims the
    # job, for a job claimed already in the transaction that created it (webhook_fanout.py).
    preloaded: object = field(default=None, compare=False, repr=False)

    def encode(self) -> bytes:
        return f"{self.job_id}|{self.tenant_id}".encode()

    @classmethod
    def decode(cls, body: bytes) -> QueueItem:
        job_id, _, tenant_id = body.decode().partition("|")
        if not job_id or not tenant_id:
            raise ValueError(f"not a queue item: {body[:80]!r}")
        return cls(job_id, tenant_id)


Handler = Callable[[QueueItem], Awaitable[None]]

TOPICS = ("inbound", "send", "deliver")


class WorkQueue(Protocol):
    async def start(self) -> None:
        """Connect (and declare queues); raise ServiceUnavailable if the broker is unreachable."""

    async def publish(self, topic: str, items: Sequence[QueueItem]) -> None:
        """Best effort: a failure is logged, never raised (the sweeper re-dispatches)."""

    async def consume(self, topic: str, handler: Handler) -> None:
        """Feed every item of `topic` to `handler` until cancelled. The item is acknowledged
        once handed over: the handler owns it from then on (its job row tracks progress)."""

    async def check(self) -> None:
        """Raise ServiceUnavailable when the broker cannot be reached (readiness)."""

    async def aclose(self) -> None:
        """Stop consuming and disconnect."""
