"""Outbound sends through one worker process, isolated from the HTTP API.

    .venv/bin/python bench/outbound.py --url http://127.0.0.1:PORT/hook --messages 3000 \
        --rate 1e9 --out result.json          (settings from CHATGATE_* like `chatgate worker`)

1. builds the Container, creates a tenant and a webhook integration whose `outbound_url` is the
   fake provider and whose `rate_limit_per_second` is --rate;
2. enqueues --messages sends with `container.sending.accept` (what POST /v1/messages calls),
   before any worker runs, so the queue is full when timing starts;
3. starts the worker runtime (`run_workers`, as `chatgate worker` and `chatgate serve` do) and
   polls the messages table until every message is `sent` (or failed, or --timeout);
4. writes a JSON result: times, statuses, CPU seconds, database commits and SQL statements of
   this process while sending.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import INBOUND_SECRET, OUTBOUND_SECRET, build_container


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import event, func, select

    from chatgate.cli import settle_heap
    from chatgate.config import Settings
    from chatgate.domain.integrations import IntegrationKind
    from chatgate.services.sending import SendRequest
    from chatgate.store.models import Message
    from chatgate.workers.runner import run_workers

    settings = Settings()
    container = build_container(settings)
    await container.start()
    commits = {"n": 0, "statements": 0}

    def on_commit(_conn: Any) -> None:
        commits["n"] += 1

    def on_statement(*_args: Any) -> None:
        commits["statements"] += 1

    event.listen(container.db.engine.sync_engine, "commit", on_commit)
    event.listen(container.db.engine.sync_engine, "before_cursor_execute", on_statement)
    try:
        boot = await container.access.bootstrap_tenant(
            name="Bench",
            slug="bench-" + secrets.token_hex(4),
            owner_email="bench@example.com",
            owner_password=secrets.token_urlsafe(16),
        )
        tenant_id = boot.tenant.id
        integration = await container.integrations.create(
            tenant_id,
            kind=IntegrationKind.WEBHOOK,
            name="bench outbound",
            config={"outbound_url": args.url, "rate_limit_per_second": args.rate},
            credentials={"inbound_secret": INBOUND_SECRET, "outbound_secret": OUTBOUND_SECRET},
        )
        # Enqueue: the same call POST /v1/messages makes, a few at a time.
        gate = asyncio.Semaphore(8)

        async def accept(i: int) -> None:
            async with gate:
                await container.sending.accept(
                    tenant_id,
                    SendRequest(integration_id=integration.id, to=f"customer-{i % 100}", text=f"bench {i}"),
                    None,
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(accept(i) for i in range(args.messages)))
        enqueue_seconds = time.perf_counter() - t0
        commits_before = commits["n"]
        statements_before = commits["statements"]

        async def counts() -> dict[str, int]:
            async with container.db.sessions() as session:
                rows = await session.execute(
                    select(Message.status, func.count())
                    .where(Message.tenant_id == tenant_id)
                    .group_by(Message.status)
                )
                return {str(s): int(n) for s, n in rows.all()}

        stop = asyncio.Event()
        settle_heap()  # as `chatgate worker` does once it has started
        profiler = None
        if args.cprofile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu0 = time.process_time()
        times0 = os.times()
        wall0 = time.time()
        t_start = time.perf_counter()
        workers = asyncio.create_task(run_workers(container, stop), name="bench-workers")
        deadline = t_start + args.timeout
        current: dict[str, int] = {}
        while time.perf_counter() < deadline:
            await asyncio.sleep(args.poll)
            current = await counts()
            if current.get("sent", 0) + current.get("failed", 0) >= args.messages:
                break
        send_seconds = time.perf_counter() - t_start
        cpu = time.process_time() - cpu0
        times1 = os.times()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        commits_during = commits["n"] - commits_before
        statements_during = commits["statements"] - statements_before
        stop.set()
        await asyncio.wait_for(workers, 30)
        return {
            "messages": args.messages,
            "rate_limit_per_second": args.rate,
            "enqueue_seconds": enqueue_seconds,
            "send_seconds": send_seconds,
            "worker_start_epoch": wall0,
            "statuses": current,
            "timed_out": current.get("sent", 0) + current.get("failed", 0) < args.messages,
            "cpu_seconds": cpu,
            "cpu_user_seconds": times1.user - times0.user,
            "cpu_system_seconds": times1.system - times0.system,
            "commits_during_sending": commits_during,
            "statements_during_sending": statements_during,
        }
    finally:
        await container.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1e9)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=0.02)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cprofile", help="write a cProfile of the sending phase (event-loop thread) here")
    args = parser.parse_args()
    import logging

    from chatgate.config import Settings
    from chatgate.observability.logging import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, json_output=settings.log_json)
    import chatgate

    print(f"bench: chatgate imported from {Path(chatgate.__file__).parent}", file=sys.stderr, flush=True)
    logging.getLogger("chatgate.access").setLevel(logging.WARNING)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
