"""CPU per event of each pipeline stage, one stage at a time, in one process (no HTTP server).

    .venv/bin/python bench/pipeline_stages.py [--events 2000] [--delivery-concurrency 200]
                                              [--profile ingest|process|deliver]
                                              [--profile-order cumulative] [--micro] [--statements]

0. app: the same requests through the ASGI app (`create_app`, its inbound fast path), with the
   HTTP server left out: what the app adds to uvicorn's own work per request (these events are
   stored, then set aside: the later stages see only the next stage's own);
1. ingest: `InboundGateway.receive` for signed Standard-Webhooks requests (authentication and
   the grouped SQLite commit), 64 at once like the HTTP bench's connections;
2. process: the inbound worker's batches (`InboundProcessor.handle_batch`, `--process-batch` each);
3. deliver: the webhook deliveries those events made, to a local receiver
   (`bench/fake_provider.py`), `--delivery-concurrency` at once.

Each stage runs alone, so its figure is the event-loop thread's CPU per event for that stage:
the numbers to watch when changing one of them (the e2e part of `bench/run.py` shows how they
add up under load). Queue items are captured instead of published, so no worker runs between
the stages. `--profile STAGE` prints a cProfile table of that stage (inflated, but its
proportions hold for synchronous code); `--micro` times transactions and row loads.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DIR,
    VENV_PYTHON,
    apply_env,
    build_container,
    container_env,
    free_port,
    sign,
    webhook_body,
)
from run import create_tenant_and_integration, durable_postgres


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="the embedded SQLite, or a durable PostgreSQL 15 started for the run",
    )
    parser.add_argument("--process-batch", type=int, default=100, help="raw events per processing batch")
    parser.add_argument("--delivery-concurrency", type=int, default=200)
    parser.add_argument("--profile", choices=["app", "ingest", "process", "deliver"])
    parser.add_argument(
        "--profile-order", default="tottime", help="cProfile sort key (tottime, cumulative, ...)"
    )
    parser.add_argument("--profile-lines", type=int, default=30, help="rows of the cProfile table")
    parser.add_argument("--micro", action="store_true", help="also time transactions and row loads")
    parser.add_argument(
        "--statements", action="store_true", help="list each stage's SQL statements, with counts and time"
    )
    return parser.parse_args()


PROFILE_ORDER = ["tottime"]
PROFILE_LINES = [30]


class StatementLog:
    """Counts and times the statements a stage runs (SQLAlchemy cursor events), by SQL text."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.stats: dict[str, list[float]] = {}
        self._started: list[float] = []
        self.enabled = False
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        took = time.perf_counter() - self._started.pop()
        if self.enabled:
            entry = self.stats.setdefault(" ".join(statement.split())[:110], [0, 0.0])
            entry[0] += 1
            entry[1] += took

    def report(self, name: str, count: int) -> None:
        total = sum(int(n) for n, _ in self.stats.values())
        print(f"  {name}: {total / count:.2f} statements per event ({total} in all); per event and SQL:")
        for sql, (n, took) in sorted(self.stats.items(), key=lambda kv: -kv[1][1]):
            print(f"    {n / count:5.2f} x {took / n * 1e6:6.0f} µs  {sql}")
        self.stats.clear()


STATEMENTS: list[StatementLog] = []


async def measure(name: str, count: int, run: Callable[[], Awaitable[None]], profile: str | None) -> None:
    if STATEMENTS:
        STATEMENTS[0].enabled = True
    profiler = cProfile.Profile() if profile == name else None
    cpu, wall = time.thread_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    await run()
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    print(
        f"{name:8s} {cpu / count * 1e6:7.0f} µs CPU per event  ({wall / count * 1e6:.0f} µs wall, {count} events)"
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats(PROFILE_ORDER[0]).print_stats(PROFILE_LINES[0])
    if STATEMENTS:
        STATEMENTS[0].enabled = False
        STATEMENTS[0].report(name, count)


async def micro(container: Any) -> None:
    from sqlalchemy import select, text

    from chatgate.store.models import Event

    async with container.db.sessions() as session:
        event_ids = list((await session.execute(select(Event.id).limit(400))).scalars())

    async def empty_transaction() -> None:
        async with container.db.transaction():
            pass

    async def one_statement_transaction() -> None:
        async with container.db.transaction() as session:
            await session.execute(text("SELECT 1"))

    turn = [0]

    async def eight_events_as_orm_objects() -> None:
        start = turn[0] % 50 * 8
        turn[0] += 1
        async with container.db.sessions() as session:
            (await session.execute(select(Event).where(Event.id.in_(event_ids[start : start + 8])))).all()

    for probe in (empty_transaction, one_statement_transaction, eight_events_as_orm_objects):
        for _ in range(20):
            await probe()
        cpu = time.thread_time()
        for _ in range(200):
            await probe()
        print(f"  {probe.__name__}: {(time.thread_time() - cpu) / 200 * 1e6:.0f} µs CPU")


async def main(args: argparse.Namespace) -> None:
    from chatgate.cli import settle_heap
    from chatgate.config import Settings
    from chatgate.providers.base import InboundRequest
    from chatgate.workers.queue import QueueItem

    port = free_port()
    postgres: Any = None
    receiver = subprocess.Popen([str(VENV_PYTHON), str(BENCH_DIR / "fake_provider.py"), "--port", str(port)])
    try:
        await asyncio.sleep(1.0)
        work = Path(tempfile.mkdtemp(prefix="chatgate-stages-"))
        url = None
        if args.db == "postgres":
            postgres = durable_postgres(work)
            url = postgres.create_database("stages")
        env = container_env(work, url)
        env["CHATGATE_RUN_WORKERS_IN_API"] = "false"
        ids = await create_tenant_and_integration(env, {}, webhook_url=f"http://127.0.0.1:{port}/tenant/hook")
        apply_env(env)
        container = build_container(Settings())
        await container.start()
        queued: dict[str, list[QueueItem]] = {}

        async def capture(topic: str, items: list[QueueItem]) -> None:
            queued.setdefault(topic, []).extend(items)

        container.ingest.publish = capture
        container.fanout.publish = capture
        public_id = ids["inbound_path"].rsplit("/", 1)[1]
        now = int(time.time())
        requests = []
        for i in range(args.events):
            message_id = f"m-{i}"
            body = webhook_body(message_id, chat=f"chat-{i % 100}")
            headers = {
                "content-type": "application/json",
                "host": "127.0.0.1",
                "webhook-id": message_id,
                "webhook-timestamp": str(now),
                "webhook-signature": sign(message_id, now, body),
            }
            requests.append(InboundRequest("POST", f"http://127.0.0.1/in/webhook/{public_id}", headers, body))

        from chatgate.app import create_app

        app = create_app(container, manage_lifecycle=False)
        inbound_path = ids["inbound_path"]

        app_requests = []
        for index in range(args.events):
            message_id = f"app-{index}"
            body = webhook_body(message_id, chat=f"chat-{index % 100}")
            raw_headers = [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"webhook-id", message_id.encode()),
                (b"webhook-timestamp", str(now).encode()),
                (b"webhook-signature", sign(message_id, now, body).encode()),
            ]
            scope = {
                "type": "http",
                "method": "POST",
                "scheme": "http",
                "path": inbound_path,
                "root_path": "",
                "query_string": b"",
                "headers": raw_headers,
                "server": ("127.0.0.1", 80),
            }
            app_requests.append((scope, {"type": "http.request", "body": body, "more_body": False}))

        async def through_app() -> None:
            slots = asyncio.Semaphore(64)

            async def one(scope: dict[str, Any], message: dict[str, Any]) -> None:
                answers: list[dict[str, Any]] = []

                async def receive() -> dict[str, Any]:
                    return message

                async def send(answer: dict[str, Any]) -> None:
                    answers.append(answer)

                async with slots:
                    await app(scope, receive, send)
                if answers[0]["status"] != 200:
                    raise RuntimeError(f"the app answered {answers}")

            await asyncio.gather(*(one(scope, message) for scope, message in app_requests))
            while len(queued.get("inbound", [])) < args.events:  # published just after commit
                await asyncio.sleep(0.01)
            queued.clear()  # stored; the stages below measure their own events

        async def ingest() -> None:
            slots = asyncio.Semaphore(64)

            async def one(request: InboundRequest) -> None:
                async with slots:
                    await container.inbound.receive("webhook", public_id, request)

            await asyncio.gather(*(one(r) for r in requests))
            while len(queued.get("inbound", [])) < args.events:  # published just after commit
                await asyncio.sleep(0.01)

        async def process() -> None:
            items = queued.pop("inbound")
            size = args.process_batch
            for start in range(0, len(items), size):
                await container.inbound_processor.handle_batch(items[start : start + size])

        async def deliver() -> None:
            slots = asyncio.Semaphore(args.delivery_concurrency)

            async def one(item: QueueItem) -> None:
                async with slots:
                    await container.delivery_worker.handle(item)

            await asyncio.gather(*(one(item) for item in queued.pop("deliver", [])))

        PROFILE_ORDER[0] = args.profile_order
        PROFILE_LINES[0] = args.profile_lines
        if args.statements:
            STATEMENTS.append(StatementLog(container.db.engine.sync_engine))
        settle_heap()  # as `chatgate serve` does once it has started
        await measure("app", args.events, through_app, args.profile)
        await measure("ingest", args.events, ingest, args.profile)
        await measure("process", args.events, process, args.profile)
        await measure("deliver", args.events, deliver, args.profile)
        if args.micro:
            await micro(container)
        await container.aclose()
    finally:
        receiver.terminate()
        receiver.wait()
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(parse_args()))
