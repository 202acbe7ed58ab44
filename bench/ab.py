"""Two versions of chatgate's ingest side by side: which one stores more webhooks per second.

    .venv/bin/python bench/ab.py HEAD~1                 # the working tree (A) against HEAD~1 (B)
    .venv/bin/python bench/ab.py v1 v2 --pairs 10 --seconds 5
    .venv/bin/python bench/ab.py HEAD~1 --db postgres

On a shared, noisy machine two `bench/run.py --commit` runs minutes apart differ by more than
most changes do. Here both servers run at once, idle while the other is measured, and the wrk
runs alternate A B, B A, A B … so each pair meets the same spell of the machine. Per run it
prints stored webhooks/s, the event loop's CPU per webhook and how busy the whole machine was;
at the end the medians, how many pairs each side won, and the median of the pairs' ratios A/B
with a 90 % interval and the sign test (bench/pairs.py): eight pairs resolve a change of about
15 %, not one of 5 %; ask for more pairs when the interval straddles 1. Same load and server as the ingest
part of `bench/run.py` (wrk -t2 -c64, pre-signed distinct requests, workers off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench
from common import REPO, VENV_PYTHON, container_env, free_port
from pairs import summarize


def export(rev: str, work: Path) -> str:
    """The `src` of `rev` ("." for the working tree), as a directory for PYTHONPATH."""
    return str(REPO / "src") if rev == "." else bench.export_src(rev, work)[1]


def machine_ticks() -> tuple[int, int]:
    """(all CPU ticks, idle + iowait ticks) from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]


class Server:
    def __init__(
        self, name: str, src: str, work: Path, database_url: str | None, drops: list[str] | None = None
    ) -> None:
        self.name = name
        extra = {"CHATGATE_RUN_WORKERS_IN_API": "false"}
        self.env = {**container_env(work / name, database_url, **extra), "PYTHONPATH": src}
        # The tenant and integration are made by the version under test, in its own process.
        setup = subprocess.run(
            [str(VENV_PYTHON), __file__, "--setup", json.dumps(self.env)],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=True,
        )
        self.setup: dict[str, str] = json.loads(setup.stdout.strip().splitlines()[-1])
        if database_url and drops:
            asyncio.run(bench.drop_raw_event_guards(database_url, drops))
        self.port = free_port()
        self.proc = bench.start_chatgate(self.env, self.port, work / f"{name}.log")
        self.runs: list[tuple[float, float]] = []  # (stored/s, event loop cores)

    def measure(self, work: Path, tag: str, args: argparse.Namespace) -> str:
        prefix = work / f"requests-{self.name}-{tag}"
        maker = bench.webhook_requests(self.port, self.setup["inbound_path"], f"{self.name}{tag}")
        bench.write_requests(prefix, args.threads, int(25_000 * args.seconds) + 2000, maker)
        ticks, idle = machine_ticks()
        loop = bench._loop_cpu(self.proc.pid)
        result = bench.run_wrk(f"http://127.0.0.1:{self.port}", prefix, args.seconds, args)
        loop = (bench._loop_cpu(self.proc.pid) - loop) / result["seconds"]
        ticks_after, idle_after = machine_ticks()
        busy = (os.cpu_count() or 1) * (1 - (idle_after - idle) / max(1, ticks_after - ticks))
        for thread in range(args.threads):
            Path(f"{prefix}.{thread}").unlink(missing_ok=True)
        rate = result["ok"] / result["seconds"]
        self.runs.append((rate, loop))
        return (
            f"{self.name}: {rate:8,.0f} stored/s   event loop {loop:.2f} cores, {loop / rate * 1e6:5.1f} us/webhook"
            f"   machine busy {busy:.2f} cores   non-200 {result['non_2xx']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("b", help="the version to compare against (a commit)")
    parser.add_argument(
        "--a", default=".", help='the version measured first (a commit; "." the working tree)'
    )
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--a-pg-drop",
        type=bench.pg_drop_list,
        default=[],
        metavar=",".join(bench.PG_DROPS),
        help="what-if, A only: drop these guards of raw_events in A's PostgreSQL database",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.a_pg_drop and args.db != "postgres":
        parser.error("--a-pg-drop needs --db postgres")
    work = Path(tempfile.mkdtemp(prefix="chatgate-ab-"))
    postgres: Any = bench.durable_postgres(work) if args.db == "postgres" else None
    servers: list[Server] = []
    try:
        for name, rev in (("A", args.a), ("B", args.b)):
            url = postgres.create_database(f"ab_{name.lower()}") if postgres is not None else None
            drops = args.a_pg_drop if name == "A" else []
            servers.append(Server(name, export(rev, work), work, url, drops))
            print(
                f"{name} = {rev}" + (f", raw_events without {', '.join(drops)}" if drops else ""), flush=True
            )
        for pair in range(args.pairs):
            for server in servers if pair % 2 == 0 else servers[::-1]:
                print(server.measure(work, str(pair), args), flush=True)
    finally:
        for server in servers:
            server.proc.stop()
        if postgres is not None:
            postgres.stop()
    a, b = (server.runs for server in servers)
    won = sum(ra > rb for (ra, _), (rb, _) in zip(a, b, strict=True))
    for server in servers:
        rates = [rate for rate, _ in server.runs]
        cost = [loop / rate * 1e6 for rate, loop in server.runs]
        print(
            f"{server.name}: median {statistics.median(rates):,.0f} stored/s,"
            f" {statistics.median(cost):.1f} us of event loop per webhook"
        )
    print(f"A stored more in {won} of {args.pairs} pairs")
    print(summarize([rate for rate, _ in a], [rate for rate, _ in b]).describe())
    return 0


def setup_tenant(env_json: str) -> None:
    """Child process: make the bench tenant and integration with the version on PYTHONPATH."""
    import asyncio

    print(
        json.dumps(
            asyncio.run(
                bench.create_tenant_and_integration(
                    json.loads(env_json), {"outbound_url": "http://127.0.0.1:9/none"}
                )
            )
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--setup":
        setup_tenant(sys.argv[2])
    else:
        sys.exit(main())
