"""Telegram at scale: connect 10,000 bots through the real connect path, then ingest across them.

    .venv/bin/python bench/telegram_bots.py                       # 10,000 bots, 20,000 updates
    .venv/bin/python bench/telegram_bots.py --bots 1000 --updates 5000
    .venv/bin/python bench/telegram_bots.py --tracemalloc 25      # + top allocations of the connects

Three processes, all on 127.0.0.1:

* the sandbox Bot API (`chatgate.sandbox.telegram_bot_api`) under uvicorn; the bots are created
  in it with its control API (`POST /sandbox/bots/bulk`);
* chatgate in webhook mode (`CHATGATE_PUBLIC_BASE_URL` = its own URL, so every connect calls
  getMe and setWebhook at the sandbox), embedded default (SQLite, workers in the API process),
  served like `bench/serve.py` does (uvicorn, uvloop, httptools, JSON logs at INFO to a file);
  wrapped in a tiny ASGI shim answering `GET /__bench/memory`: `gc.collect()`, then the process's
  RSS from /proc/self/status (and, with --tracemalloc, the top allocation sites since a mark);
* this script: the load generator (aiohttp).

Measured: the API process's RSS before and after connecting the bots (`POST /v1/integrations`,
concurrency 50), the time that took, then ingest throughput with the bots connected: N signed
Telegram updates POSTed straight to `/in/telegram/{public_id}` with each bot's secret header,
spread round-robin over all bots, concurrency 64 — stored per second (200 answers, not
duplicates) and p50/p99 latency — and how long the workers took to process them all.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import VENV_PYTHON, Proc, container_env, free_port, wait_http  # noqa: E402

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MEMORY_TARGET_MB = 50.0


# ------------------------------------------------------------------------------ server role


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def with_memory_probe(app: Any, trace_frames: int) -> Any:
    """`GET /__bench/memory[?mark=1|?top=N]`: RSS after gc.collect() (and tracemalloc's view)."""
    marks: list[tracemalloc.Snapshot] = []

    async def probe(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/__bench/memory":
            await app(scope, receive, send)
            return
        query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part)
        gc.collect()
        answer: dict[str, Any] = {"rss_mb": round(rss_mb(), 1)}
        if trace_frames:
            traced, _peak = tracemalloc.get_traced_memory()
            answer["traced_mb"] = round(traced / 1e6, 1)
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            if query.get("mark"):
                marks[:] = [snapshot]
            elif query.get("top") and marks:
                stats = snapshot.compare_to(marks[0], "traceback")[: int(query["top"])]
                answer["top"] = [
                    {
                        "size_kb": round(s.size_diff / 1024, 1),
                        "count": s.count_diff,
                        "where": [f"{f.filename.split('/src/')[-1]}:{f.lineno}" for f in s.traceback][-4:],
                    }
                    for s in stats
                ]
        body = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return probe


def serve(port: int, trace_frames: int) -> None:
    import uvicorn

    from chatgate.app import create_app
    from chatgate.bootstrap import Container
    from chatgate.config import Settings
    from chatgate.observability.logging import configure_logging

    if trace_frames:
        tracemalloc.start(trace_frames)
    settings = Settings()
    configure_logging(settings.log_level, json_output=settings.log_json)
    container = Container(settings)
    if os.environ.get("BENCH_INTEGRATION_CACHE_TTL"):  # experiment: --integration-cache-ttl
        container.integration_cache.ttl = float(os.environ["BENCH_INTEGRATION_CACHE_TTL"])
    app = with_memory_probe(create_app(container), trace_frames)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run()


# ------------------------------------------------------------------------------ load


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_many(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run one(0..count-1) with at most `concurrency` in flight; the wall time in seconds."""
    next_index = iter(range(count))

    async def worker() -> None:
        for index in next_index:
            await one(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def get_json(session: Any, url: str, **kwargs: Any) -> Any:
    async with session.get(url, **kwargs) as response:
        response.raise_for_status()
        return await response.json()


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import aiohttp

    sandbox_port, chatgate_port = free_port(), free_port()
    sandbox_url, chatgate_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{chatgate_port}"
    data_dir = work / "data"
    env = container_env(
        data_dir,
        None,
        CHATGATE_TELEGRAM_API_BASE=sandbox_url,
        CHATGATE_PUBLIC_BASE_URL=chatgate_url,
        CHATGATE_LOG_LEVEL="INFO",
        CHATGATE_RUN_WORKERS_IN_API="false" if args.no_workers else "true",
    )
    if args.integration_cache_ttl:
        env["BENCH_INTEGRATION_CACHE_TTL"] = str(args.integration_cache_ttl)
    sandbox = Proc(
        [
            str(VENV_PYTHON),
            "-m",
            "uvicorn",
            "--factory",
            "chatgate.sandbox.telegram_bot_api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(sandbox_port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        log_path=work / "sandbox.log",
    )
    server = Proc(
        [
            str(VENV_PYTHON),
            str(Path(__file__).resolve()),
            "--serve",
            str(chatgate_port),
            "--tracemalloc",
            str(args.tracemalloc),
        ],
        env=env,
        log_path=work / "chatgate.log",
    )
    results: dict[str, Any] = {"bots": args.bots, "updates": args.updates, "warmup": args.warmup}
    try:
        wait_http(f"{sandbox_url}/sandbox/faults", sandbox)
        wait_http(f"{chatgate_url}/health/live", server, timeout=120)
        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            results.update(await _run(args, http, sandbox_url, chatgate_url, data_dir))
    finally:
        server.stop(30)
        sandbox.stop()
    return results


async def _run(
    args: argparse.Namespace, http: Any, sandbox_url: str, chatgate_url: str, data_dir: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # A tenant and its API key, made with the CLI's code path against the server's database.
    api_key = await asyncio.to_thread(_bootstrap_tenant, data_dir)
    headers = {"X-API-Key": api_key}
    async with http.post(
        f"{sandbox_url}/sandbox/bots/bulk", json={"count": args.bots + args.warmup}
    ) as response:
        created = (await response.json())["bots"]
    warmup, bots = created[: args.warmup], created[args.warmup :]
    print(f"{len(created)} sandbox bots created", file=sys.stderr, flush=True)
    probe = f"{chatgate_url}/__bench/memory"
    out["rss_cold_mb"] = (await get_json(http, probe))["rss_mb"]

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    public_ids: list[str] = [""] * len(bots)

    async def connect_one(bot: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
        body = {"kind": "telegram_bot", "name": name, "credentials": {"bot_token": bot["token"]}}
        async with http.post(f"{chatgate_url}/v1/integrations", json=body, headers=headers) as response:
            return response.status, await response.json()

    async def warm(index: int) -> None:
        status, answer = await connect_one(warmup[index], f"warm-up bot {index}")
        if status != 201:
            raise RuntimeError(f"warm-up connect failed: {status} {answer}")

    # Warm-up connects (same path, same concurrency, not counted): what they leave behind is the
    # process's working set under this load — pools, caches, allocator arenas — not per-bot state.
    if warmup:
        out["warmup_seconds"] = await run_many(len(warmup), args.connect_concurrency, warm)
    before = await get_json(http, probe, params={"mark": "1"})
    out["rss_before_mb"] = before["rss_mb"]

    async def connect(index: int) -> None:
        started = time.perf_counter()
        status, answer = await connect_one(bots[index], f"bench bot {index}")
        latencies.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1
        if status == 201 and answer["status"] == "active":
            public_ids[index] = answer["public_id"]
        if (index + 1) % 1000 == 0:
            print(f"  {index + 1} connected", file=sys.stderr, flush=True)

    out["connect_seconds"] = await run_many(len(bots), args.connect_concurrency, connect)
    out["connect_statuses"] = statuses
    out["connected_active"] = sum(1 for p in public_ids if p)
    out["connect_p50_ms"] = percentile(latencies, 0.5) * 1000
    out["connect_p99_ms"] = percentile(latencies, 0.99) * 1000
    await asyncio.sleep(1.0)  # let the last responses' work settle (audit rows, log lines)
    after = await get_json(http, probe, params={"top": str(args.top)} if args.tracemalloc else {})
    out["rss_after_connect_mb"] = after["rss_mb"]
    out["rss_growth_mb"] = after["rss_mb"] - before["rss_mb"]
    if "top" in after:
        out["tracemalloc_top"] = after["top"]
        out["traced_mb"] = after.get("traced_mb")

    # Each bot's secret, as Telegram holds it (read from the sandbox, not from chatgate).
    secrets: list[str] = [""] * len(bots)

    async def secret_of(index: int) -> None:
        info = await get_json(
            http, f"{sandbox_url}/sandbox/bots/{bots[index]['id']}", params={"calls": "false"}
        )
        secrets[index] = info["webhook"]["secret_token"] if info["webhook"] else ""

    await run_many(len(bots), 64, secret_of)
    usable = [i for i in range(len(bots)) if public_ids[i] and secrets[i]]
    if not usable:
        raise RuntimeError("no bot was connected; see chatgate.log")

    # Ingest: signed updates straight to /in/telegram/{public_id}, round-robin over the bots.
    bodies: list[tuple[str, bytes, str]] = []
    for n in range(args.updates):
        index = usable[n % len(usable)]
        update_id = n // len(usable) + 1
        update = {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": int(time.time()),
                "from": {"id": 1000 + n % 997, "is_bot": False, "first_name": "Ann"},
                "chat": {"id": 1000 + n % 997, "type": "private", "first_name": "Ann"},
                "text": f"hello {n}",
            },
        }
        bodies.append((public_ids[index], json.dumps(update, separators=(",", ":")).encode(), secrets[index]))
    ingest_latencies: list[float] = []
    ingest_statuses: dict[str, int] = {}

    async def post(n: int) -> None:
        public_id, body, secret = bodies[n]
        started = time.perf_counter()
        async with http.post(
            f"{chatgate_url}/in/telegram/{public_id}",
            data=body,
            headers={SECRET_HEADER: secret, "Content-Type": "application/json"},
        ) as response:
            answer = await response.read()
        ingest_latencies.append(time.perf_counter() - started)
        key = str(response.status)
        if response.status == 200 and json.loads(answer).get("duplicate"):
            key = "200 duplicate"
        ingest_statuses[key] = ingest_statuses.get(key, 0) + 1

    ingest_started = time.monotonic()
    out["ingest_seconds"] = await run_many(len(bodies), args.ingest_concurrency, post)
    out["ingest_statuses"] = ingest_statuses
    out["stored_per_second"] = ingest_statuses.get("200", 0) / out["ingest_seconds"]
    out["ingest_p50_ms"] = percentile(ingest_latencies, 0.5) * 1000
    out["ingest_p99_ms"] = percentile(ingest_latencies, 0.99) * 1000
    if not args.no_workers:
        out["processed_all_after_s"] = await asyncio.to_thread(
            _wait_processed, data_dir / "chatgate.db", len(bodies), ingest_started, args.drain
        )
    final = await get_json(http, probe)
    out["rss_after_ingest_mb"] = final["rss_mb"]
    return out


def _bootstrap_tenant(data_dir: Path) -> str:
    """A tenant and API key through the same service `chatgate` uses, on the server's database."""
    from chatgate.bootstrap import Container
    from chatgate.config import Settings

    os.environ.update(container_env(data_dir, None))
    container = Container(Settings())

    async def make() -> str:
        try:
            suffix = str(int(time.time()))
            result = await container.access.bootstrap_tenant(
                name="bench",
                slug=f"bench-{suffix}",
                owner_email=f"bench-{suffix}@example.com",
                owner_password="a long enough bench password",
            )
            return str(result.api_key.plaintext)
        finally:
            await container.aclose()

    return asyncio.run(make())


def _wait_processed(db: Path, count: int, started: float, limit: float) -> float | None:
    """Seconds from the first ingest POST until every raw event has left `pending`."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        while time.monotonic() - started < limit:
            pending = connection.execute(
                "SELECT count(*) FROM raw_events WHERE status = 'pending'"
            ).fetchone()[0]
            total = connection.execute("SELECT count(*) FROM raw_events").fetchone()[0]
            if total >= count and pending == 0:
                return time.monotonic() - started
            time.sleep(0.25)
        return None
    finally:
        connection.close()


# ------------------------------------------------------------------------------ report


def table(results: dict[str, Any]) -> str:
    def row(name: str, value: str, note: str = "") -> str:
        return f"| {name:<34} | {value:>14} | {note} |"

    growth = results["rss_growth_mb"]
    rows = [
        "| measure                            |          value | |",
        "|---|---:|---|",
        row("bots connected (active)", f"{results['connected_active']:,}", f"of {results['bots']:,}"),
        row("time to connect", f"{results['connect_seconds']:.1f} s", f"{results['bots'] / results['connect_seconds']:.0f} connects/s, concurrency 50"),
        row("connect latency p50 / p99", f"{results['connect_p50_ms']:.0f} / {results['connect_p99_ms']:.0f} ms", "getMe + setWebhook at the sandbox"),
        row("API RSS cold / after warm-up", f"{results['rss_cold_mb']:.0f} / {results['rss_before_mb']:.0f} MB", f"{results['warmup']} warm-up connects, not counted"),
        row("API RSS before / after connect", f"{results['rss_before_mb']:.0f} / {results['rss_after_connect_mb']:.0f} MB", "after gc.collect()"),
        row("memory growth for the bots", f"{growth:.1f} MB", f"target < {MEMORY_TARGET_MB:.0f} MB: {'met' if growth < MEMORY_TARGET_MB else 'MISSED'}"),
        row("updates ingested", f"{results['updates']:,}", f"statuses {results['ingest_statuses']}"),
        row("stored per second", f"{results['stored_per_second']:.0f}", "concurrency 64, spread over every bot"),
        row("ingest latency p50 / p99", f"{results['ingest_p50_ms']:.1f} / {results['ingest_p99_ms']:.1f} ms", ""),
    ]  # fmt: skip
    if results.get("processed_all_after_s") is not None:
        rows.append(
            row(
                "all processed after",
                f"{results['processed_all_after_s']:.1f} s",
                "workers in the API process",
            )
        )
    rows.append(row("API RSS after ingest", f"{results['rss_after_ingest_mb']:.0f} MB", ""))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bots", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=500, help="connects before the memory baseline")
    parser.add_argument("--ingest-concurrency", type=int, default=64)
    parser.add_argument("--no-workers", action="store_true", help="CHATGATE_RUN_WORKERS_IN_API=false")
    parser.add_argument(
        "--integration-cache-ttl",
        type=float,
        help="experiment: the inbound path's integration cache TTL in seconds (default 5)",
    )
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for processing")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES", help="trace allocations")
    parser.add_argument("--top", type=int, default=15, help="allocation sites to show with --tracemalloc")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.tracemalloc)
        return
    work = Path(tempfile.mkdtemp(prefix="chatgate-tg-bench-"))
    try:
        results = asyncio.run(bench(args, work))
    finally:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
    if args.integration_cache_ttl:
        print(f"NON-DEFAULT: integration cache TTL {args.integration_cache_ttl:g} s (experiment)")
    print(table(results))
    if results.get("tracemalloc_top"):
        print(
            f"\ntracemalloc: {results['traced_mb']} MB traced; top allocation sites since before the connects:"
        )
        for item in results["tracemalloc_top"]:
            print(
                f"  {item['size_kb']:>10.1f} KB {item['count']:>8} blocks  {' <- '.join(reversed(item['where']))}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
