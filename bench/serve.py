"""Run one app under uvicorn for the bench: `chatgate` or `bare`, same server flags for both.

    .venv/bin/python bench/serve.py --app chatgate --port 8123
    .venv/bin/python bench/serve.py --app bare --port 8124

One worker process, uvloop + httptools, and the uvicorn arguments `chatgate serve` uses
(proxy headers from 127.0.0.1, no Server header). chatgate reads its settings from the
CHATGATE_* environment like `chatgate serve`, and configures its logging the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

BARE_BODY = b'{"ok":true,"duplicate":false}'
BARE_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BARE_BODY)).encode())]


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and answers 200: the ceiling for any Python ASGI app on this server."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": BARE_HEADERS})
    await send({"type": "http.response.body", "body": BARE_BODY})


def bare_protocol() -> Any:
    """uvicorn's httptools protocol answering every POST itself, from `on_message_complete`, with
    the bare app's answer and no ASGI task: what the HTTP server costs without ASGI, the level at
    which chatgate answers provider webhooks (chatgate.api.inbound_protocol). Other requests (the
    bench's health check) go to the bare ASGI app."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    tail = b"".join(name + b": " + value + b"\r\n" for name, value in BARE_HEADERS) + b"\r\n" + BARE_BODY

    class BareProtocol(HttpToolsProtocol):
        _answering = False

        def on_headers_complete(self) -> None:
            self._answering = self.parser.get_method() == b"POST"
            self._chunks: list[bytes] = []
            if not self._answering:
                super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if self._answering:
                self._chunks.append(body)
            else:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._answering:
                super().on_message_complete()
                return
            b"".join(self._chunks)  # the body, read whole as the bare app reads it
            defaults = b"".join(n + b": " + v + b"\r\n" for n, v in self.server_state.default_headers)
            self.transport.write(STATUS_LINE[200] + defaults + tail)
            self.server_state.total_requests += 1

    return BareProtocol


class NullRowStore:
    """Diagnostic (`--null-store`): each batch is answered as stored, and nothing is stored.
    The rest of a webhook's path runs as usual (routing, authentication, the ingest writer's
    batches, the queue items): what that path costs without any database, the ceiling that no
    storage work can raise."""

    connections = 2
    parallel = True  # answered as PostgreSQL's batches are
    constraint_errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        from chatgate.domain.ids import new_ids  # chatgate is imported only when it is served

        self._new_ids = new_ids

    async def store(self, rows: list[Any], now: Any, committed: Any = None) -> list[str | None]:
        stored: list[str | None] = list(self._new_ids("raw", len(rows)))
        await asyncio.sleep(0)  # answered in a later loop round, as a database's answer is
        if committed is not None:
            committed(stored)
        return stored

    async def aclose(self) -> None:
        return None


CONTAINER: list[Any] = []
STALL_TASKS: list[Any] = []


def chatgate_app(*, null_store: bool = False) -> Any:
    from common import build_container

    from chatgate.app import create_app
    from chatgate.config import Settings
    from chatgate.observability.logging import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, json_output=settings.log_json)
    import chatgate

    print(f"bench: chatgate imported from {Path(chatgate.__file__).parent}", file=sys.stderr, flush=True)
    container = build_container(settings)
    if null_store:
        container.ingest.row_store = NullRowStore()
        container.ingest.batches_in_flight = NullRowStore.connections
    CONTAINER.append(container)
    app = create_app(container)
    from chatgate.cli import settle_heap

    settle_heap()  # as `chatgate serve` does
    import gc

    if os.environ.get("CHATGATE_BENCH_GC_THRESHOLD"):  # experiment: e.g. 700,10,10 (Python's own)
        gc.set_threshold(*(int(v) for v in os.environ["CHATGATE_BENCH_GC_THRESHOLD"].split(",")))
    return app


class GcPauses:
    """Cycle-collector pauses per generation (count, total and longest), printed at shutdown:
    a long pause stops the event loop like a long transaction does."""

    def __init__(self) -> None:
        import gc
        import time

        self._clock = time.perf_counter
        self._started = 0.0
        self.stats: dict[int, list[float]] = {0: [0, 0.0, 0.0], 1: [0, 0.0, 0.0], 2: [0, 0.0, 0.0]}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        took = self._clock() - self._started
        entry = self.stats[info["generation"]]
        entry[0] += 1
        entry[1] += took
        entry[2] = max(entry[2], took)

    def summary(self) -> str:
        return " ".join(
            f"gen{g}={int(n)}x/{total * 1000:.0f}ms/max{longest * 1000:.1f}ms"
            for g, (n, total, longest) in self.stats.items()
        )


class StallWatch:
    """Where the event loop's thread was when the loop stalled: a 1 ms ticker on the loop, and a
    thread that records the loop thread's stack whenever the ticker is late by `threshold`.
    Printed at shutdown (CHATGATE_BENCH_STALLS=1): the places that make latency's tail."""

    def __init__(self, threshold: float = 0.01) -> None:
        import collections
        import threading
        import time

        self.threshold = threshold
        self._clock = time.perf_counter
        self._beat = self._clock()
        self._main = threading.get_ident()
        self.stacks: collections.Counter[str] = collections.Counter()
        self.stalls = 0
        threading.Thread(target=self._watch, daemon=True).start()

    async def tick(self) -> None:
        while True:
            self._beat = self._clock()
            await asyncio.sleep(0.001)

    def _watch(self) -> None:
        import time
        import traceback

        last_counted = 0.0
        while True:
            time.sleep(0.002)
            beat = self._beat
            if self._clock() - beat < self.threshold:
                continue
            frame = sys._current_frames().get(self._main)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            # the innermost frame, then chatgate's own frames (where the time was asked for)
            ours = [f for f in stack[:-1] if "/chatgate/" in f.filename][-6:]
            key = " < ".join(
                f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed([*ours, stack[-1]])
            )
            self.stacks[key] += 1
            if beat != last_counted:
                self.stalls += 1
                last_counted = beat

    def summary(self) -> str:
        lines = [f"BENCH_STALLS {self.stalls} stalls over {self.threshold * 1000:.0f} ms; samples by stack:"]
        lines += [f"  {n:5d}  {stack}" for stack, n in self.stacks.most_common(12)]
        return "\n".join(lines)


def inbound_handler_times(container: Any) -> str:
    """The inbound handler's own time (from its start to its answer), from the route's
    histogram: what of the HTTP 200 latency the server spends on the request once it runs."""
    histogram = container.metrics.request_duration.labels("POST", "/in/{kind}/{public_id}")
    if hasattr(histogram, "cumulative"):  # LoopHistogram (since 7f8893e)
        buckets = histogram.cumulative()
    else:  # prometheus_client's, when measuring an older commit (--commit)
        buckets = [
            (b.labels.get("le"), b.value)
            for b in histogram.collect()[0].samples
            if b.name.endswith("_bucket")
        ]
    total = buckets[-1][1] if buckets else 0
    return " ".join(f"le{le}={int(n)}" for le, n in buckets) + f" of {int(total)}"


def thread_cpu() -> str:
    """CPU seconds per thread of this process (Linux /proc), e.g. `main=12.1 python-4242=3.2`."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    system = 0.0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as stat, open(f"/proc/self/task/{task}/comm") as comm:
                fields = stat.read().rsplit(")", 1)[1].split()
                name = "main" if int(task) == os.getpid() else f"{comm.read().strip()}-{task}"
        except OSError:
            continue
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        if name == "main":
            system = int(fields[12]) / tick
    return (
        " ".join(f"{name}={seconds:.1f}" for name, seconds in sorted(found.items(), key=lambda kv: -kv[1]))
        + f" (main in the kernel: {system:.1f})"
    )


def http_protocol(args: argparse.Namespace) -> Any:
    """chatgate is served as `chatgate serve` serves it; the reference apps by plain uvicorn."""
    choice = args.http or ("chatgate" if args.app == "chatgate" else "plain")
    if choice == "plain":
        return "httptools"
    if choice == "chatgate":
        try:
            from chatgate.api.inbound_protocol import InboundHttpProtocol
        except ModuleNotFoundError:  # a revision from before it (bench/ab.py, --commit)
            print("bench: this chatgate answers webhooks through ASGI", file=sys.stderr, flush=True)
        else:
            return InboundHttpProtocol
    try:
        from chatgate.api.http_protocol import HeadHoldingHttpToolsProtocol
    except ModuleNotFoundError:
        print(
            "bench: this chatgate has no http_protocol module: plain httptools", file=sys.stderr, flush=True
        )
        return "httptools"
    return HeadHoldingHttpToolsProtocol


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--app", choices=["chatgate", "bare", "bare-protocol", "grouped"], required=True)
    parser.add_argument(
        "--grouped-db",
        help="--app grouped: sqlite:PATH or a postgresql:// DSN (bench/grouped_app.py)",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="what-if: sys.setswitchinterval (GIL hand-over, default 0.005 s)",
    )
    parser.add_argument(
        "--null-store",
        action="store_true",
        help="diagnostic: chatgate's ingest stores nothing (its path's cost without a database)",
    )
    parser.add_argument("--workers", type=int, default=1, help="server processes (SO_REUSEPORT)")
    parser.add_argument(
        "--http",
        choices=("plain", "head-holding", "chatgate"),
        help="uvicorn's httptools protocol as is, with one write per response (head-holding), or "
        "as `chatgate serve` runs it (also webhooks without ASGI); default: chatgate's for chatgate, "
        "plain for the references",
    )
    args = parser.parse_args()
    import signal
    import socket

    children: list[int] = []
    if args.workers > 1:
        for _ in range(args.workers - 1):
            pid = os.fork()
            if pid == 0:
                children = []
                break
            children.append(pid)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.set_inheritable(True)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
        print(f"bench: switch interval {sys.getswitchinterval()}", file=sys.stderr, flush=True)
    if args.app == "chatgate":
        app = chatgate_app(null_store=args.null_store)
    elif args.app == "grouped":
        from grouped_app import PostgresGroups, SqliteGroups, grouped_app

        where = args.grouped_db or ""
        groups = SqliteGroups(where[7:]) if where.startswith("sqlite:") else PostgresGroups(where)
        app = grouped_app(groups)
    else:
        app = bare_app
    pauses = GcPauses()
    stalls = StallWatch() if os.environ.get("CHATGATE_BENCH_STALLS") else None
    # CHATGATE_BENCH_CPROFILE=FILE: cProfile the whole server run (slows it ~2x: proportions only)
    cprofile_out = os.environ.get("CHATGATE_BENCH_CPROFILE")
    profiler = None
    if cprofile_out:
        import cProfile
        import time

        profiler = cProfile.Profile(time.thread_time)  # CPU of the loop thread, not waits
        profiler.enable()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http=bare_protocol() if args.app == "bare-protocol" else http_protocol(args),
        workers=1,
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        server_header=False,
        log_level=None if args.app == "chatgate" else "warning",
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets)
            print(f"BENCH_THREAD_CPU {thread_cpu()}", flush=True)
            if profiler is not None and cprofile_out is not None:
                profiler.disable()
                profiler.dump_stats(cprofile_out)
            if stalls is not None:
                print(stalls.summary(), flush=True)
            print(f"BENCH_GC {pauses.summary()}", flush=True)
            if CONTAINER:
                # IngestWriter counts its commits "for the benchmark"; run.py reads this from the log.
                print(f"BENCH_INBOUND_HANDLER {inbound_handler_times(CONTAINER[0])}", flush=True)
                batches = getattr(CONTAINER[0].ingest, "batches", None)
                if batches is not None:
                    print(f"BENCH_INGEST_BATCHES {batches}", flush=True)

    server = Server(config)
    if stalls is not None:
        original_startup = server.startup

        async def startup(sockets: Any = None) -> None:
            STALL_TASKS.append(asyncio.get_running_loop().create_task(stalls.tick()))
            await original_startup(sockets)

        server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])
    for child in children:
        try:
            os.kill(child, signal.SIGTERM)
            os.waitpid(child, 0)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    main()
