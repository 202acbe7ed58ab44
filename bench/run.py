"""chatgate benchmark: one command, a table of ratios measured in the same run.

    .venv/bin/python bench/run.py                      # everything, about 4-5 minutes
    .venv/bin/python bench/run.py --only ingest --db sqlite
    .venv/bin/python bench/run.py --only e2e,outbound
    .venv/bin/python bench/run.py --profile /tmp/prof  # also py-spy the chatgate servers

The machine is shared and noisy, so every headline figure is a ratio to something measured
minutes earlier in the same run, under the same load generator (see docs/performance.md):

* ingest    authenticated, durably stored webhooks per second (SQLite, every commit fsynced; and
            PostgreSQL 15 with fsync on), relative to a bare ASGI app on the same uvicorn
            (1 worker, uvloop, httptools) and to aiogram's webhook server with a no-op
            handler, all driven by wrk with pre-signed, distinct requests;
* e2e       inbound POST -> the tenant's webhook receiver gets the `message.received`
            delivery (and, separately, the event is visible in the events table), at a fixed
            open-loop rate, workers in-process, embedded default (SQLite);
* outbound  sends per second through one worker process to a local fake provider, limits
            off; then with rate_limit_per_second on, the most sends seen in any 1-s window.

Experiments (printed above the table, never mixed into a default run): --set CHATGATE_X=Y,
--profile DIR (py-spy raw stacks, summarise with bench/profile_summary.py).

Needs: wrk (apt-get install -y wrk), PostgreSQL 15 binaries for --db postgres (the same
Debian package the tests use), root (PostgreSQL runs as user postgres), and for the aiogram
comparison a separate virtualenv, see bench/requirements.txt. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import resource
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(BENCH.parent))  # for tests.servers.PostgresServer

from common import (  # noqa: E402
    INBOUND_SECRET,
    OUTBOUND_SECRET,
    REPO,
    TELEGRAM_SECRET_TOKEN,
    VENV_PYTHON,
    Proc,
    apply_env,
    build_container,
    container_env,
    free_port,
    sign,
    wait_http,
    webhook_body,
)

LUA = BENCH / "replay.lua"
# aiogram pins pydantic<2.14 (chatgate uses a newer one), so it gets its own virtualenv, kept
# outside the work tree: CHATGATE_BENCH_AIOGRAM_VENV or ~/.cache/chatgate-bench/aiogram-venv.
AIOGRAM_VENV = Path(
    os.environ.get("CHATGATE_BENCH_AIOGRAM_VENV")
    or Path.home() / ".cache" / "chatgate-bench" / "aiogram-venv"
)
AIOGRAM_PYTHON = AIOGRAM_VENV / "bin" / "python"
AIOGRAM_HINT = f"python3 -m venv {AIOGRAM_VENV} && {AIOGRAM_VENV}/bin/pip install -r bench/requirements.txt"

# Targets printed next to the figures.
TARGET_INGEST_VS_BARE = 0.50
TARGET_INGEST_VS_AIOGRAM = 3.0
TARGET_E2E_P99_MS = 50.0
TARGET_OUTBOUND_PER_SECOND = 2000.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =============================================================================== the table


@dataclass
class Row:
    part: str
    figure: str
    value: str
    ratio: str = ""
    target: str = ""
    result: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: str) -> None:
        self.rows.append(Row(*args))

    def render(self) -> str:
        head = Row("part", "figure", "measured", "ratio", "target", "result")
        rows = [head, *self.rows]
        cols = ["part", "figure", "value", "ratio", "target", "result"]
        widths = {c: max(len(getattr(r, c)) for r in rows) for c in cols}
        lines = []
        for index, row in enumerate(rows):
            lines.append("  ".join(getattr(row, c).ljust(widths[c]) for c in cols).rstrip())
            if index == 0:
                lines.append("  ".join("-" * widths[c] for c in cols))
        return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {platform.python_version()}"


# =============================================================================== wrk


def write_requests(prefix: Path, threads: int, count: int, make: Callable[[int], bytes]) -> int:
    """Write `count` raw requests round-robin into one file per wrk thread; returns bytes."""
    files = [open(f"{prefix}.{t}", "wb") for t in range(threads)]  # noqa: SIM115
    total = 0
    try:
        for i in range(count):
            raw = make(i)
            record = b"%d\n" % len(raw) + raw
            files[i % threads].write(record)
            total += len(record)
    finally:
        for f in files:
            f.close()
    return total


def webhook_requests(port: int, path: str, tag: str) -> Callable[[int], bytes]:
    """Standard-Webhooks-signed inbound requests, each with its own webhook-id (= message id)."""
    timestamp = int(time.time())  # chatgate accepts +-300 s; a run uses these within a minute
    host = f"127.0.0.1:{port}"

    def make(i: int) -> bytes:
        msg_id = f"{tag}-{i}"
        body = webhook_body(msg_id, chat=f"chat-{i % 100}")
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nwebhook-id: {msg_id}\r\n"
            f"webhook-timestamp: {timestamp}\r\nwebhook-signature: {sign(msg_id, timestamp, body)}\r\n\r\n"
        )
        return head.encode() + body

    return make


def telegram_requests(port: int, tag_base: int) -> Callable[[int], bytes]:
    """Telegram updates as the Bot API posts them, with the secret-token header aiogram checks."""
    host = f"127.0.0.1:{port}"
    now = int(time.time())

    def make(i: int) -> bytes:
        chat = 1000 + i % 100
        body = json.dumps(
            {
                "update_id": tag_base + i,
                "message": {
                    "message_id": tag_base + i,
                    "date": now,
                    "chat": {"id": chat, "type": "private", "first_name": "Alice"},
                    "from": {"id": chat, "is_bot": False, "first_name": "Alice"},
                    "text": "hello from the bench",
                },
            },
            separators=(",", ":"),
        ).encode()
        head = (
            f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Telegram-Bot-Api-Secret-Token: {TELEGRAM_SECRET_TOKEN}\r\n\r\n"
        )
        return head.encode() + body

    return make


def run_wrk(url: str, prefix: Path, duration: float, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(prefix),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            result["seconds"] = result["duration_us"] / 1e6
            result["ok"] = result["requests"] - result["non_2xx"]
            result["socket_errors"] = sum(
                result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
            )
            return result
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")


def profile_during(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    pyspy = shutil.which("py-spy") or str(REPO / ".venv" / "bin" / "py-spy")
    if not Path(pyspy).exists():
        log("py-spy not found (.venv/bin/pip install py-spy); not profiling")
        return None
    return subprocess.Popen(
        [
            pyspy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "200",
            *(["--idle"] if os.environ.get("CHATGATE_BENCH_PROFILE_IDLE") else []),  # waits too
            *(["--gil"] if os.environ.get("CHATGATE_BENCH_PROFILE_GIL") else []),  # GIL holders only
            *(["--native"] if os.environ.get("CHATGATE_BENCH_PROFILE_NATIVE") else []),  # C frames too
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# =============================================================================== chatgate setup


async def create_tenant_and_integration(
    env: dict[str, str], config: dict[str, Any], webhook_url: str | None = None
) -> dict[str, str]:
    """What `chatgate bootstrap`, POST /v1/integrations and (with `webhook_url`) POST
    /v1/webhook-endpoints do, in-process, before the server starts."""
    apply_env(env)
    from chatgate.config import Settings
    from chatgate.domain.integrations import IntegrationKind

    container = build_container(Settings())
    await container.start()
    try:
        boot = await container.access.bootstrap_tenant(
            name="Bench",
            slug="bench-" + secrets.token_hex(4),
            owner_email="bench@example.com",
            owner_password=secrets.token_urlsafe(16),
        )
        integration = await container.integrations.create(
            boot.tenant.id,
            kind=IntegrationKind.WEBHOOK,
            name="bench",
            config=config,
            credentials={"inbound_secret": INBOUND_SECRET, "outbound_secret": OUTBOUND_SECRET},
        )
        if webhook_url is not None:
            from chatgate.services.webhooks import EndpointSpec

            await container.webhooks.create(
                boot.tenant.id, EndpointSpec(url=webhook_url, event_types=["message.received"])
            )
    finally:
        await container.aclose()
    return {
        "tenant_id": boot.tenant.id,
        "api_key": boot.api_key.plaintext,
        "integration_id": integration.id,
        "inbound_path": f"/in/webhook/{integration.public_id}",
    }


def start_chatgate(env: dict[str, str], port: int, logfile: Path, *, extra: Sequence[str] = ()) -> Proc:
    argv = [str(VENV_PYTHON), str(BENCH / "serve.py"), "--app", "chatgate", "--port", str(port), *extra]
    proc = Proc(argv, env=env, log_path=logfile)
    wait_http(f"http://127.0.0.1:{port}/health/live", proc, timeout=60)
    return proc


def durable_postgres(
    work: Path, *, unix_socket: bool = False, pg_settings: Sequence[str] = (), cpus: set[int] | None = None
) -> Any:
    """tests.servers.PostgresServer, but durable: fsync, synchronous_commit and full-page writes on.
    With `unix_socket`, its database URLs reach it through its Unix socket instead of TCP;
    `pg_settings` ("name=value") are passed to the server as `-c` options; with `cpus`, its
    processes run on those CPUs only (`--pin-postgres`)."""
    from tests.servers import PostgresServer

    class DurablePostgres(PostgresServer):
        durable = True
        settings = tuple(pg_settings)

        def create_database(self, name: str) -> str:
            url = str(super().create_database(name))
            if not unix_socket:
                return url
            return f"postgresql+asyncpg://{self.user}@/{name}?host={self.dir}&port={self.port}"

    missing = [n for n, p in DurablePostgres.binaries().items() if p is None]
    if missing:
        raise RuntimeError(
            f"PostgreSQL 15 binaries missing ({', '.join(missing)}): apt-get install -y postgresql"
        )
    server = DurablePostgres()
    server.start()
    if cpus is not None:
        pin_postgres(server, cpus)
    return server


def pin_postgres(server: Any, cpus: set[int]) -> None:
    """Move PostgreSQL's postmaster and every process it has started to `cpus`; the backends it
    starts later inherit them."""
    from common import children

    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    moved = [postmaster, *children(postmaster)]
    for pid in moved:
        os.sched_setaffinity(pid, cpus)
    log(f"  PostgreSQL's {len(moved)} processes pinned to CPU {sorted(cpus)}")


# =============================================================================== part 1: ingest


@dataclass
class IngestResult:
    name: str
    rate: float  # answered 200 (and for chatgate: stored) per second
    wrk: dict[str, Any]
    stored: int | None = None
    cpu: float | None = None
    loop_cpu: float | None = None  # chatgate: its event loop thread's share of `cpu`

    def loop_us_per_request(self) -> float:
        """CPU microseconds of the event loop per request answered (the bare app and aiogram: the
        whole process, one thread doing the work)."""
        busy = self.loop_cpu if self.loop_cpu is not None else (self.cpu or 0.0)
        return float(busy / max(1, self.wrk["ok"]) * 1e6)


def ingest(args: argparse.Namespace, work: Path, report: Report, pg_holder: dict[str, Any]) -> None:
    results: dict[str, list[IngestResult]] = {}
    bare_runs: list[float] = []
    for round_index in range(args.rounds):
        # The reference runs first and last in each round; its mean is the round's reference
        # and the spread between the two shows how much the machine drifted meanwhile.
        log("ingest: bare ASGI app")
        bare_first = ingest_simple(args, work, "bare", f"{round_index}a")
        if args.aiogram:
            log("ingest: aiogram webhook server")
            results.setdefault("aiogram", []).append(ingest_simple(args, work, "aiogram", str(round_index)))
        if args.protocol_reference:
            log("ingest: a bare answer in uvicorn's HTTP protocol, no ASGI")
            results.setdefault("bare-protocol", []).append(
                ingest_simple(args, work, "bare-protocol", str(round_index))
            )
        for db in args.db:
            log(f"ingest: chatgate on {db}")
            results.setdefault(db, []).append(
                ingest_chatgate(args, work, db, bare_first.rate, round_index, pg_holder)
            )
            if args.grouped and db in ("sqlite", "postgres"):
                log(f"ingest: the bare app with grouped commits on {db}")
                if db == "sqlite":
                    target = f"sqlite:{work / f'grouped-{round_index}.db'}"
                else:
                    url_db = pg_holder["server"].create_database(f"bench_grouped_{round_index}")
                    target = url_db.replace("postgresql+asyncpg://", "postgresql://")
                results.setdefault(f"grouped-{db}", []).append(
                    ingest_simple(args, work, f"grouped-{db}", str(round_index), target)
                )
        log("ingest: bare ASGI app again")
        bare_last = ingest_simple(args, work, "bare", f"{round_index}b")
        bare_runs += [bare_first.rate, bare_last.rate]
        results.setdefault("bare", []).append(
            IngestResult("bare", (bare_first.rate + bare_last.rate) / 2, bare_last.wrk, cpu=bare_last.cpu)
        )

    def med(name: str) -> float:
        return statistics.median(r.rate for r in results[name])

    def each(name: str, reference: str) -> list[float]:
        """Each round's rate of `name` over its own round's `reference`."""
        return [r.rate / ref.rate for r, ref in zip(results[name], results[reference], strict=True)]

    def paired(name: str, reference: str) -> float:
        """The median of the rounds' ratios: each run against the reference measured in its own
        round (the bare app's two runs bracket it), not against another round's, as `bench/ab.py`
        pairs its runs; with one round, the plain ratio."""
        return statistics.median(each(name, reference))

    bare_rate = med("bare")
    report.raw["ingest"] = {k: [r.__dict__ for r in v] for k, v in results.items()}
    report.raw["ingest_bare_runs"] = bare_runs
    spread = (max(bare_runs) - min(bare_runs)) / bare_rate
    report.add(
        "ingest",
        "bare ASGI app (uvicorn 1 worker, uvloop+httptools)",
        f"{fmt_int(bare_rate)} req/s (runs {' / '.join(fmt_int(r) for r in bare_runs)})",
        "1.00 (reference)",
    )
    report.add(
        "ingest",
        "  bare: server CPU per request (its last run)",
        f"{results['bare'][-1].loop_us_per_request():.0f} µs",
    )
    if spread > 0.2:
        report.notes.append(
            f"the machine drifted: the bare reference runs differ by {spread:.0%}; "
            "rerun, or use more --rounds for steadier ratios"
        )

    def other_server(name: str, label: str) -> None:
        """Another server measured beside the bare app, shown as a row (if it was measured)."""
        if name in results:
            report.add("ingest", label, f"{fmt_int(med(name))} req/s", f"{paired(name, 'bare'):.2f} x bare")

    other_server("aiogram", "aiogram 3 webhook server (aiohttp), no-op handler")
    other_server(
        "bare-protocol", "bare answer in uvicorn's HTTP protocol, no ASGI task (as chatgate answers webhooks)"
    )
    for db in args.db:
        if f"grouped-{db}" in results:
            rate = med(f"grouped-{db}")
            report.add(
                "ingest",
                f"reference: the bare app with grouped commits, {db} (stores the body only)",
                f"{fmt_int(rate)} /s",
                f"{paired(f'grouped-{db}', 'bare'):.2f} x bare",
            )
        rate = med(db)
        last = results[db][-1]
        if db == "none":
            report.add(
                "ingest",
                "chatgate, no database (diagnostic: nothing stored)",
                f"{fmt_int(rate)} /s",
                f"{paired(db, 'bare'):.2f} x bare",
                "the ceiling",
            )
            report.add(
                "ingest",
                "  none: server CPU / event loop per webhook",
                f"{(last.cpu or 0) / last.wrk['seconds']:.2f} cores / {last.loop_us_per_request():.0f} µs",
                f"p50 {last.wrk['lat_p50_us'] / 1000:.1f} ms, p99 {last.wrk['lat_p99_us'] / 1000:.1f} ms",
            )
            continue
        label = {"sqlite": "SQLite WAL fsynced", "postgres": "PostgreSQL 15 fsync=on"}[db]
        vs_bare = paired(db, "bare")
        ok = vs_bare >= TARGET_INGEST_VS_BARE
        report.add(
            "ingest",
            f"chatgate, {label}: stored webhooks/s",
            f"{fmt_int(rate)} /s",
            f"{vs_bare:.2f} x bare",
            f">= {TARGET_INGEST_VS_BARE:.2f} x bare",
            verdict(ok),
        )
        if len(results[db]) > 1:  # each round against its own reference: the spread of the spells
            report.add(
                "ingest",
                f"  {db}: each round, x its round's bare app",
                ", ".join(f"{x:.2f}" for x in each(db, "bare")),
                f"ratio of the medians {rate / bare_rate:.2f} x",
            )
        if "aiogram" in results:
            vs_aiogram = paired(db, "aiogram")
            ok2 = vs_aiogram >= TARGET_INGEST_VS_AIOGRAM
            report.add(
                "ingest",
                f"chatgate, {label}: vs aiogram",
                "",
                f"{vs_aiogram:.2f} x aiogram",
                f">= {TARGET_INGEST_VS_AIOGRAM:.1f} x aiogram",
                verdict(ok2),
            )
        if "bare-protocol" in results:
            report.add(
                "ingest",
                f"  {db}: vs the bare answer in the HTTP protocol",
                "",
                f"{paired(db, 'bare-protocol'):.2f} x",
            )
        w = last.wrk
        report.add(
            "ingest",
            f"  {db}: 200s / rows stored / non-200 / socket errors",
            f"{w['ok']:,} / {last.stored:,} / {w['non_2xx']:,} / {w['socket_errors']:,}",
            f"p50 {w['lat_p50_us'] / 1000:.1f} ms, p99 {w['lat_p99_us'] / 1000:.1f} ms",
        )
        report.add(
            "ingest",
            f"  {db}: server CPU / rows per ingest commit / event loop per webhook",
            f"{(last.cpu or 0) / w['seconds']:.2f} cores / {w['rows_per_commit']:.1f} / "
            f"{last.loop_us_per_request():.0f} µs",
        )
        if w["wraps"]:
            report.notes.append(
                f"ingest {db}: the request set wrapped {w['wraps']} time(s): duplicates were "
                "answered 200 without a new row; the rate uses rows stored"
            )
    report.notes.append(
        "chatgate is served as `chatgate serve` serves it: uvicorn's httptools protocol answering provider "
        "webhooks itself, without an ASGI task, and writing each response's head and body at once "
        "(chatgate.api.inbound_protocol); the bare and grouped apps as ASGI apps on "
        + (
            "the same protocol (--references-head-holding)"
            if args.references_head_holding
            else "uvicorn as it comes (--references-head-holding serves them like chatgate)"
        )
    )
    if args.rounds > 1:
        report.notes.append(f"ingest figures are medians of {args.rounds} rounds")
    if args.aiogram and not AIOGRAM_PYTHON.exists():
        report.notes.append(f"aiogram comparison skipped: no {AIOGRAM_PYTHON}; install: {AIOGRAM_HINT}")


def ingest_simple(
    args: argparse.Namespace, work: Path, kind: str, round_index: str, grouped_db: str = ""
) -> IngestResult:
    port = free_port()
    if kind in ("bare", "bare-protocol") or kind.startswith("grouped-"):
        app = kind if kind in ("bare", "bare-protocol") else "grouped"
        grouped = ["--grouped-db", grouped_db] if grouped_db else []
        argv = [str(VENV_PYTHON), str(BENCH / "serve.py"), "--app", app, "--port", str(port)]
        http = ["--http", "head-holding"] if args.references_head_holding else []
        proc = Proc(
            [*argv, "--workers", str(args.server_workers), *grouped, *http],
            log_path=work / f"{kind}-{round_index}.log",
        )
        health = f"http://127.0.0.1:{port}/"
        path = "/in/webhook/" + ("bare" if app == "bare-protocol" else app)
        make = webhook_requests(port, path, f"{kind}{round_index}")
        url = f"http://127.0.0.1:{port}"
    else:
        proc = Proc(
            [str(AIOGRAM_PYTHON), str(BENCH / "aiogram_server.py"), "--port", str(port)],
            log_path=work / f"aiogram-{round_index}.log",
        )
        health = f"http://127.0.0.1:{port}/health"
        make = telegram_requests(port, 1_000_000 * (int(round_index) + 1))
        url = f"http://127.0.0.1:{port}"
    try:
        wait_http(health, proc, timeout=60)
        prefix = work / f"{kind}-{round_index}-reqs"
        write_requests(prefix, args.threads, args.simple_requests, make)  # cycling is harmless here
        run_wrk(url, prefix, args.warmup, args)
        cpu0 = _cpu(proc.pid)
        result = run_wrk(url, prefix, args.duration, args)
        cpu = _cpu(proc.pid) - cpu0
        for t in range(args.threads):
            Path(f"{prefix}.{t}").unlink(missing_ok=True)
    finally:
        proc.stop()
    rate = result["ok"] / result["seconds"]
    log(
        f"  {kind}: {fmt_int(rate)} req/s ({result['non_2xx']} non-200, {result['socket_errors']} socket errors, "
        f"server CPU {cpu / result['seconds']:.2f} cores)"
    )
    return IngestResult(kind, rate, result, cpu=cpu)


def _cpu(pid: int) -> float:
    from common import cpu_seconds

    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


def _loop_cpu(pid: int) -> float:
    from common import main_thread_cpu_seconds

    try:
        return main_thread_cpu_seconds(pid)
    except OSError:
        return 0.0


def _children_cpu() -> float:
    """CPU seconds of this script's finished children (wrk, once `run_wrk` returns)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# `--pg-drop`: what each of the raw events' guards costs the ingest (a what-if; never shipped).
PG_DROPS = {
    "fk": "ALTER TABLE raw_events DROP CONSTRAINT fk_raw_events_integration_id_integrations",
    "tenant-index": "DROP INDEX ix_raw_events_tenant_id",
    "pending-index": "DROP INDEX ix_raw_events_pending",
}


def pg_drop_list(value: str) -> list[str]:
    """An argparse type: the comma-separated `--pg-drop` names, each one of PG_DROPS."""
    names = [name for name in value.split(",") if name]
    unknown = [name for name in names if name not in PG_DROPS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown guard {unknown[0]!r} (one of {', '.join(PG_DROPS)})")
    return names


# `--pg-set`: server settings to try; the ones that make a commit durable are not among them.
PG_DURABILITY_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")


def pg_setting(value: str) -> str:
    """An argparse type: one `--pg-set NAME=VALUE`, never one of the durability settings."""
    name, sep, setting = value.partition("=")
    name = name.strip().lower()
    if not sep or not name or not setting:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    if name in PG_DURABILITY_SETTINGS:
        raise argparse.ArgumentTypeError(f"{name} is a durability setting; the bench keeps it as it is")
    return f"{name}={setting}"


async def drop_raw_event_guards(url: str, drops: Sequence[str]) -> None:
    """Drop the named constraint and indexes of `raw_events` in the bench's own database."""
    import asyncpg

    from chatgate.services.ingest_postgres import asyncpg_dsn

    dsn = asyncpg_dsn(url)
    assert dsn is not None, url
    connection = await asyncpg.connect(dsn)
    try:
        for name in drops:
            await connection.execute(PG_DROPS[name])
    finally:
        await connection.close()


def ingest_chatgate(
    args: argparse.Namespace,
    work: Path,
    db: str,
    bare_rate: float,
    round_index: int,
    pg_holder: dict[str, Any],
) -> IngestResult:
    data_dir = work / f"ingest-{db}-{round_index}"
    url_db = None
    if db == "postgres":
        if "server" not in pg_holder:
            log("  starting PostgreSQL 15 (durable settings)")
            pg_holder["server"] = durable_postgres(
                work,
                unix_socket=args.pg_unix_socket,
                pg_settings=args.pg_set,
                cpus={1} if args.pin_postgres else None,
            )
        url_db = pg_holder["server"].create_database(f"bench_ingest_{round_index}")
    extra = {"CHATGATE_RUN_WORKERS_IN_API": "false"}
    env = container_env(data_dir, url_db, **extra, **args.settings)
    setup = asyncio.run(create_tenant_and_integration(env, {"outbound_url": "http://127.0.0.1:9/none"}))
    if url_db and args.pg_drop:
        asyncio.run(drop_raw_event_guards(url_db, args.pg_drop))
    port = free_port()
    null_store = db == "none"
    extra_args = (["--null-store"] if null_store else []) + ["--workers", str(args.server_workers)]
    proc = start_chatgate(env, port, work / f"chatgate-{db}-{round_index}.log", extra=extra_args)
    url = f"http://127.0.0.1:{port}"
    tag = f"r{round_index}"
    try:
        # Enough distinct requests for the whole run even at the bare app's speed.
        warm = work / f"{db}-warm-reqs"
        main = work / f"{db}-main-reqs"
        write_requests(
            warm,
            args.threads,
            int(bare_rate * 1.3 * args.warmup) + 2000,
            webhook_requests(port, setup["inbound_path"], f"warm{tag}"),
        )
        write_requests(
            main,
            args.threads,
            int(bare_rate * 1.3 * args.duration) + 2000,
            webhook_requests(port, setup["inbound_path"], f"main{tag}"),
        )
        run_wrk(url, warm, args.warmup, args)
        profiler = None
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            profiler = profile_during(
                proc.pid, args.duration - 1, args.profile / f"ingest-{db}-{round_index}.txt"
            )
        cpu0, loop0, wrk0 = _cpu(proc.pid), _loop_cpu(proc.pid), _children_cpu()
        result = run_wrk(url, main, args.duration, args)
        cpu = _cpu(proc.pid) - cpu0
        loop_cpu, wrk_cpu = _loop_cpu(proc.pid) - loop0, _children_cpu() - wrk0
        if profiler is not None:
            profiler.wait(60)
        time.sleep(0.5)  # let in-flight commits land before counting
        stored = (
            result["ok"]
            if null_store
            else count_rows(db, data_dir, pg_holder, f"bench_ingest_{round_index}", f"main{tag}-")
        )
        for prefix in (warm, main):
            for t in range(args.threads):
                Path(f"{prefix}.{t}").unlink(missing_ok=True)
    finally:
        proc.stop()
    batches = ingest_batches(proc)
    total_rows = (
        math.nan  # nothing stored to count
        if null_store
        else count_rows(db, data_dir, pg_holder, f"bench_ingest_{round_index}", "")
    )
    result["rows_per_commit"] = total_rows / batches if batches else math.nan
    # each 200 is a committed row, unless the request set wrapped (duplicates answer 200 too)
    good = min(result["ok"], stored) if result["wraps"] else result["ok"]
    rate = good / result["seconds"]
    log(
        f"  chatgate/{db}: {fmt_int(rate)} stored/s; 200s {result['ok']:,}, rows {stored:,}, "
        f"non-200 {result['non_2xx']:,}, socket errors {result['socket_errors']:,}, "
        f"server CPU {cpu / result['seconds']:.2f} cores (event loop thread {loop_cpu / result['seconds']:.2f}), "
        f"wrk {wrk_cpu / result['seconds']:.2f} cores"
        + ("" if null_store else f", {result['rows_per_commit']:.1f} rows per ingest commit")
    )
    return IngestResult(f"chatgate-{db}", rate, result, stored=stored, cpu=cpu, loop_cpu=loop_cpu)


def ingest_batches(proc: Proc) -> int:
    """IngestWriter.batches, printed by bench/serve.py at shutdown (0 if missing)."""
    for line in reversed(proc.log_path.read_text(errors="replace").splitlines()):
        if line.startswith("BENCH_INGEST_BATCHES "):
            return int(line.split()[1])
    return 0


def count_rows(db: str, data_dir: Path, pg_holder: dict[str, Any], database: str, prefix: str) -> int:
    sql = f"SELECT count(*) FROM raw_events WHERE provider_event_id LIKE '{prefix}%'"
    if db == "sqlite":
        with sqlite3.connect(data_dir / "chatgate.db", timeout=30) as conn:
            return int(conn.execute(sql).fetchone()[0])
    return int(pg_holder["server"].psql(sql, database).strip())


# =============================================================================== part 2: e2e


async def e2e_load(
    port: int, path: str, db_file: Path, rate: float, seconds: float, tag: str, drain: float
) -> dict[str, Any]:
    """Open-loop sender at `rate`/s plus a poller of the events table; returns per-event times.

    Waits at most `drain` seconds after the last send for the events to become visible.
    """
    import aiohttp

    count = int(rate * seconds)
    timestamp = int(time.time())
    bodies = []
    for i in range(count):
        msg_id = f"{tag}-{i}"
        body = webhook_body(msg_id, chat=f"chat-{i % 50}")
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(msg_id, timestamp, body),
        }
        bodies.append((msg_id, body, headers))
    intended: dict[str, float] = {}
    sent_at: dict[str, float] = {}  # when each request actually left (the generator may lag)
    answered: dict[str, tuple[int, float]] = {}
    seen: dict[str, tuple[float, float]] = {}  # msg id -> (visible at, created_at)
    sending_done = asyncio.Event()

    def poll_once(conn: sqlite3.Connection, last_id: int) -> tuple[int, list[tuple[str, str]]]:
        rows = conn.execute(
            "SELECT id, json_extract(data, '$.provider_ids.message_id'), created_at FROM events "
            "WHERE id > ? AND type = 'message.received' ORDER BY id",
            (last_id,),
        ).fetchall()
        if rows:
            last_id = rows[-1][0]
        return last_id, [(r[1], r[2]) for r in rows]

    async def poller() -> None:
        conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        last_id = 0
        deadline: float | None = None
        try:
            while deadline is None or time.monotonic() < deadline:
                last_id, rows = await asyncio.to_thread(poll_once, conn, last_id)
                now = time.time()
                for msg_id, created in rows:
                    if msg_id and msg_id.startswith(tag + "-") and msg_id not in seen:
                        created_at = datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()
                        seen[msg_id] = (now, created_at)
                if sending_done.is_set():
                    if deadline is None:
                        deadline = time.monotonic() + drain
                    if len(seen) >= sum(1 for s, _ in answered.values() if s == 200):
                        return
                await asyncio.sleep(0.002)
        finally:
            conn.close()

    connector = aiohttp.TCPConnector(limit=256)
    url = f"http://127.0.0.1:{port}{path}"
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def send(msg_id: str, body: bytes, headers: dict[str, str]) -> None:
            sent_at[msg_id] = time.time()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    answered[msg_id] = (response.status, time.time())
            except Exception as exc:  # counted as an error below
                answered[msg_id] = (-1, time.time())
                log(f"  e2e send failed: {type(exc).__name__}: {exc}")

        # The generator's own cycle collections (this process has imported the whole app) paused
        # it for tens of milliseconds, late sends that counted against chatgate: none while it runs.
        gc.collect()
        gc.freeze()
        gc.disable()
        poll_task = asyncio.create_task(poller())
        tasks = []
        t0 = time.time() + 0.2
        lag_max = 0.0
        for i, (msg_id, body, headers) in enumerate(bodies):
            when = t0 + i / rate
            delay = when - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lag_max = max(lag_max, time.time() - when)
            intended[msg_id] = when
            tasks.append(asyncio.create_task(send(msg_id, body, headers)))
        last_send = time.time()
        await asyncio.gather(*tasks)
        sending_done.set()
        await poll_task
        gc.enable()
        gc.unfreeze()
    return {
        "intended": intended,
        "sent_at": sent_at,
        "answered": answered,
        "seen": seen,
        "lag_max": lag_max,
        "count": count,
        "wall": time.time() - t0,
        "last_send": last_send,
    }


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; inf when it falls on a missing (never seen) value."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def fmt_ms(seconds: float, censored_at: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return f"> {censored_at:.0f} s"
    ms = seconds * 1000
    return f"{ms:,.1f} ms" if ms < 10_000 else f"{seconds:,.1f} s"


def e2e(args: argparse.Namespace, work: Path, report: Report) -> None:
    """`--e2e-rounds` runs, each on a fresh server and database; the round with the median p99
    is shown, with every round's p50 / p99 beside it (one stall of the shared machine moves
    a 10-second run's p99 by tens of milliseconds)."""
    rounds: list[Report] = []
    for index in range(args.e2e_rounds):
        one = Report()
        e2e_round(args, work, one, index)
        rounds.append(one)
    ordered = sorted(rounds, key=lambda r: float(r.raw["e2e"]["webhook_s"]["p99"]))
    median = ordered[(len(ordered) - 1) // 2]
    report.rows.extend(median.rows[:1])
    if len(rounds) > 1:
        drain = args.e2e_drain
        each = ", ".join(
            f"{fmt_ms(r.raw['e2e']['webhook_s']['p50'], drain)} / {fmt_ms(r.raw['e2e']['webhook_s']['p99'], drain)}"
            for r in rounds
        )
        report.add("e2e", f"  every round, p50 / p99 ({len(rounds)} rounds; the median p99 shown)", each)
    report.rows.extend(median.rows[1:])
    report.notes.extend(median.notes)
    report.raw["e2e"] = median.raw["e2e"]
    report.raw["e2e_rounds"] = [r.raw["e2e"] for r in rounds]


def e2e_round(args: argparse.Namespace, work: Path, report: Report, index: int) -> None:
    log(
        f"e2e round {index + 1}: {args.e2e_rate:.0f} events/s for {args.e2e_duration:.0f} s, SQLite, "
        "workers in-process"
    )
    receiver_port = free_port()
    receiver = Proc(
        [str(VENV_PYTHON), str(BENCH / "fake_provider.py"), "--port", str(receiver_port)],
        log_path=work / f"tenant-receiver-{index}.log",
    )
    data_dir = work / f"e2e-{index}"
    env = container_env(data_dir, None, **{"CHATGATE_RUN_WORKERS_IN_API": "true", **args.settings})
    proc = None
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/stats", receiver)
        setup = asyncio.run(
            create_tenant_and_integration(
                env,
                {"outbound_url": "http://127.0.0.1:9/none"},
                webhook_url=f"http://127.0.0.1:{receiver_port}/tenant/hook",
            )
        )
        port = free_port()
        proc = start_chatgate(env, port, work / f"chatgate-e2e-{index}.log")
        db_file = data_dir / "chatgate.db"
        # warm-up: ~100 events (connections, statement caches), drained before measuring
        asyncio.run(
            e2e_load(
                port,
                setup["inbound_path"],
                db_file,
                args.e2e_rate,
                min(1.0, 100 / args.e2e_rate),
                "e2ewarm",
                args.e2e_drain,
            )
        )
        profiler = None
        if args.profile and index == 0:
            args.profile.mkdir(parents=True, exist_ok=True)
            profiler = profile_during(proc.pid, args.e2e_duration, args.profile / "e2e.txt")
        cpu0, loop_cpu0 = _cpu(proc.pid), _loop_cpu(proc.pid)
        res = asyncio.run(
            e2e_load(
                port, setup["inbound_path"], db_file, args.e2e_rate, args.e2e_duration, "e2e", args.e2e_drain
            )
        )
        cpu, loop_cpu = _cpu(proc.pid) - cpu0, _loop_cpu(proc.pid) - loop_cpu0
        if profiler is not None:
            profiler.wait(60)
        # the tenant's receiver: whatever the drain time left (at least 3 s more)
        deadline = time.monotonic() + max(3.0, args.e2e_drain - (time.time() - res["last_send"]))
        delivered: dict[str, float] = {}
        while time.monotonic() < deadline:
            delivered = {
                m: t for m, t in receiver_stats(receiver_port)["events"].items() if m.startswith("e2e-")
            }
            if len(delivered) >= len(res["seen"]):
                break
            time.sleep(0.25)
        stamps = e2e_stamps(db_file, "e2e-")
    finally:
        if proc is not None:
            proc.stop()
        receiver.stop()
    intended, answered, seen = res["intended"], res["answered"], res["seen"]
    ok = [m for m, (status, _) in answered.items() if status == 200]
    errors = len(answered) - len(ok)
    inf = math.inf
    # events never seen within the drain time count as infinitely late (censored), not dropped
    visible = [seen[m][0] - intended[m] if m in seen else inf for m in ok]
    created = [seen[m][1] - intended[m] if m in seen else inf for m in ok]
    webhook = [delivered[m] - intended[m] if m in delivered else inf for m in ok]
    response = [answered[m][1] - intended[m] for m in ok]
    sent_at = res["sent_at"]
    webhook_from_send = [delivered[m] - sent_at[m] if m in delivered else inf for m in ok]
    send_lag = [sent_at[m] - intended[m] for m in ok]
    missing = sum(1 for m in ok if m not in seen)
    undelivered = sum(1 for m in ok if m not in delivered)
    received = [stamps[m][0] - intended[m] for m in ok if m in stamps]
    processed = [stamps[m][1] - stamps[m][0] if m in stamps else inf for m in ok]
    done_at = sorted(stamps[m][1] for m in ok if m in stamps)
    # under overload this is the inbound worker's capacity: events processed per second of its run
    capacity = (len(done_at) - 1) / (done_at[-1] - min(intended.values())) if len(done_at) > 1 else math.nan
    drain = args.e2e_drain
    report.raw["e2e"] = {
        "count": res["count"],
        "ok": len(ok),
        "errors": errors,
        "never_visible": missing,
        "never_delivered": undelivered,
        "lag_max": res["lag_max"],
        "webhook_s": {"p50": pct(webhook, 50), "p99": pct(webhook, 99)},
        "webhook_from_send_s": {"p50": pct(webhook_from_send, 50), "p99": pct(webhook_from_send, 99)},
        "generator_lag_s": {"p50": pct(send_lag, 50), "p99": pct(send_lag, 99)},
        "visible_s": {"p50": pct(visible, 50), "p99": pct(visible, 99)},
        "created_s": {"p50": pct(created, 50), "p99": pct(created, 99)},
        "response_s": {"p50": pct(response, 50), "p99": pct(response, 99)},
        "received_s": {"p50": pct(received, 50), "p99": pct(received, 99)},
        "received_to_processed_s": {"p50": pct(processed, 50), "p99": pct(processed, 99)},
        "server_cpu_cores": cpu / max(res["wall"], 1e-9),
        "loop_cpu_cores": loop_cpu / max(res["wall"], 1e-9),
        "processed_per_second": capacity,
    }
    p99 = pct(webhook, 99)
    good = errors == 0 and undelivered == 0 and p99 * 1000 < TARGET_E2E_P99_MS
    ratio = "n/a" if math.isinf(p99) else f"{p99 * 1000 / TARGET_E2E_P99_MS:,.1f} x target"
    report.add(
        "e2e",
        f"inbound POST -> tenant webhook received, {args.e2e_rate:.0f}/s, SQLite",
        f"p50 {fmt_ms(pct(webhook, 50), drain)}, p99 {fmt_ms(p99, drain)}",
        ratio,
        f"p99 < {TARGET_E2E_P99_MS:.0f} ms",
        verdict(good),
    )
    report.add(
        "e2e",
        "  same, from each request's actual send (generator lag left out)",
        f"p50 {fmt_ms(pct(webhook_from_send, 50), drain)}, p99 {fmt_ms(pct(webhook_from_send, 99), drain)}",
        f"generator lag p99 {pct(send_lag, 99) * 1000:.1f} ms",
    )
    report.add(
        "e2e",
        "  same, message.received visible in the events table",
        f"p50 {fmt_ms(pct(visible, 50), drain)}, p99 {fmt_ms(pct(visible, 99), drain)}",
    )
    report.add(
        "e2e",
        "  HTTP 200 answer (ingest commit)",
        f"p50 {fmt_ms(pct(response, 50), drain)}, p99 {fmt_ms(pct(response, 99), drain)}",
    )
    report.add(
        "e2e",
        "  raw_events.received_at -> processed_at (queue + worker)",
        f"p50 {fmt_ms(pct(processed, 50), drain)}, p99 {fmt_ms(pct(processed, 99), drain)}",
        f"{capacity:,.0f} processed/s",
    )
    report.add(
        "e2e",
        "  sent / 200 / errors / not visible / not delivered",
        f"{res['count']:,} / {len(ok):,} / {errors:,} / {missing:,} / {undelivered:,}",
        f"server CPU {cpu / max(res['wall'], 1e-9):.2f} cores (event loop thread "
        f"{loop_cpu / max(res['wall'], 1e-9):.2f})",
    )
    report.notes.append(
        f"e2e latency is measured from each request's scheduled send time (open loop, "
        f"{args.e2e_rate:.0f}/s) to the moment a local tenant receiver (a webhook endpoint subscribed to "
        "message.received) gets the Standard-Webhooks delivery; it covers HTTP, authentication, the "
        "ingest commit (fsync), the queue, the inbound worker's claim and processing transactions, the "
        "delivery job and its HTTP POST. The 'visible' line stops at the event's commit (a ~2 ms poller "
        f"on a read-only SQLite connection). Events not seen within {drain:.0f} s after the last send count "
        "as infinitely late."
    )
    if res["lag_max"] > 0.05:
        report.notes.append(
            f"e2e: the load generator fell behind its schedule by up to {res['lag_max'] * 1000:.0f} ms"
        )


def receiver_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=30) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def e2e_stamps(db_file: Path, prefix: str) -> dict[str, tuple[float, float]]:
    """The server's own stamps per event: raw_events.received_at (ingest batch) and processed_at."""
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute(
            "SELECT provider_event_id, received_at, processed_at FROM raw_events WHERE provider_event_id LIKE ?",
            (prefix + "%",),
        ).fetchall()

    def to_ts(value: str) -> float:
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()

    return {m: (to_ts(r), to_ts(p)) for m, r, p in rows if r and p}


# =============================================================================== part 3: outbound


def outbound(args: argparse.Namespace, work: Path, report: Report) -> None:
    port = free_port()
    fake = Proc(
        [str(VENV_PYTHON), str(BENCH / "fake_provider.py"), "--port", str(port)],
        log_path=work / "fake-provider.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/stats", fake)
        hook = f"http://127.0.0.1:{port}/hook"
        log("outbound: bare aiohttp client -> fake provider (reference)")
        client_rate = asyncio.run(bare_client_rate(hook, 3.0, 32))
        provider_times(port)  # clears the provider's record
        log(f"  bare client: {fmt_int(client_rate)} POST/s")
        log(f"outbound: {args.outbound_messages} sends, limits off")
        free = outbound_run(args, work, "free", hook, args.outbound_messages, 1e9)
        times = provider_times(port)
        rate = free["statuses"].get("sent", 0) / free["send_seconds"]
        report.raw["outbound_free"] = {**free, "provider_count": len(times)}
        ok = rate >= TARGET_OUTBOUND_PER_SECOND and not free["timed_out"]
        report.add(
            "outbound",
            "bare aiohttp client, 32 concurrent POSTs to the fake provider",
            f"{fmt_int(client_rate)} /s",
            "1.00 (reference)",
        )
        report.add(
            "outbound",
            "chatgate sends/s, one worker process, limits off, SQLite",
            f"{fmt_int(rate)} /s",
            f"{rate / client_rate:.3f} x bare client",
            f">= {fmt_int(TARGET_OUTBOUND_PER_SECOND)} /s",
            verdict(ok),
        )
        per = free["statuses"].get("sent", 0) or 1
        report.add(
            "outbound",
            "  sent / failed / provider saw",
            f"{free['statuses'].get('sent', 0):,} / {free['statuses'].get('failed', 0):,} / {len(times):,}",
            f"worker CPU {free['cpu_seconds'] / free['send_seconds']:.2f} cores",
        )
        report.add(
            "outbound",
            "  per send: SQL statements / commits / CPU",
            f"{free['statements_during_sending'] / per:.2f} / {free['commits_during_sending'] / per:.3f} / "
            f"{free['cpu_seconds'] / per * 1000:.2f} ms",
        )
        if len(times) > 1:
            steady = (len(times) - 1) / max(times[-1] - times[0], 1e-9)
            report.add(
                "outbound",
                "  provider's first to last receipt (excludes start-up and the last commit)",
                f"{fmt_int(steady)} /s",
                f"first after {times[0] - free['worker_start_epoch']:.2f} s",
            )
        log(f"outbound: {args.limited_messages} sends at rate_limit_per_second={args.limited_rate:g}")
        limited = outbound_run(args, work, "limited", hook, args.limited_messages, args.limited_rate)
        times = provider_times(port)
        window = max_in_window(times, 1.0)
        calendar = max_per_calendar_second(times)
        steady = max_in_window([t for t in times if times and t >= times[0] + 1.0], 1.0)
        budget = max(1, int(args.limited_rate))  # sends allowed in any sliding second
        report.raw["outbound_limited"] = {
            **limited,
            "provider_count": len(times),
            "max_window": window,
            "max_calendar_second": calendar,
            "max_window_after_first_second": steady,
        }
        sent = limited["statuses"].get("sent", 0)
        ideal = max(0.0, (sent - 1) / args.limited_rate)
        report.add(
            "outbound",
            f"  rate_limit_per_second={args.limited_rate:g}: max sends in any 1-s window",
            f"{window}",
            f"{window / args.limited_rate:.2f} x budget",
            f"<= {args.limited_rate:g}",
            verdict(window <= args.limited_rate and sent == args.limited_messages),
        )
        report.add(
            "outbound",
            "    same, after the first second / per calendar second",
            f"{steady} / {calendar}",
            "",
            f"budget {budget}",
        )
        report.add(
            "outbound",
            "    sent / took / ideal (the budget, spent evenly)",
            f"{sent} / {limited['send_seconds']:.1f} s / {ideal:.1f} s",
        )
        report.add(
            "outbound",
            "    per send: SQL statements / commits / CPU",
            f"{limited['statements_during_sending'] / max(sent, 1):.1f} / "
            f"{limited['commits_during_sending'] / max(sent, 1):.1f} / "
            f"{limited['cpu_seconds'] / max(sent, 1) * 1000:.1f} ms",
        )
    finally:
        fake.stop()


async def bare_client_rate(url: str, seconds: float, concurrency: int) -> float:
    """The HTTP ceiling of the outbound part: aiohttp POSTs of a send-sized body, nothing else."""
    import aiohttp

    body = json.dumps(
        {"type": "message.send", "id": "msg_x", "conversation": {"id": "c"}, "text": "bench"}
    ).encode()
    done = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                    await r.read()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.monotonic() - started)


def outbound_run(
    args: argparse.Namespace, work: Path, name: str, hook: str, n: int, rate: float
) -> dict[str, Any]:
    data_dir = work / f"outbound-{name}"
    env = container_env(data_dir, None, **args.settings)
    out = work / f"outbound-{name}.json"
    proc = Proc(
        [
            str(VENV_PYTHON),
            str(BENCH / "outbound.py"),
            "--url",
            hook,
            "--messages",
            str(n),
            "--rate",
            str(rate),
            "--timeout",
            str(args.outbound_timeout),
            "--out",
            str(out),
        ],
        env=env,
        log_path=work / f"outbound-{name}.log",
    )
    profiler = None
    deadline = time.monotonic() + args.outbound_timeout + 180
    try:
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            if args.profile and profiler is None and "worker" in _started(work / f"outbound-{name}.log"):
                args.profile.mkdir(parents=True, exist_ok=True)
                profiler = profile_during(proc.pid, 8, args.profile / f"outbound-{name}.txt")
        if proc.alive():
            raise RuntimeError(f"outbound.py did not finish in time:\n{proc.tail()}")
        if proc.popen.returncode != 0 or not out.exists():
            raise RuntimeError(f"outbound.py failed ({proc.popen.returncode}):\n{proc.tail()}")
    finally:
        proc.stop()
        if profiler is not None:
            profiler.wait(30)
    result: dict[str, Any] = json.loads(out.read_text())
    log(
        f"  {name}: {result['statuses']} in {result['send_seconds']:.2f} s "
        f"(enqueue took {result['enqueue_seconds']:.1f} s)"
    )
    return result


def _started(logfile: Path) -> str:
    try:
        return logfile.read_text(errors="replace")
    except OSError:
        return ""


def provider_times(port: int) -> list[float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats?reset=1", timeout=30) as response:
        data = json.loads(response.read())
    return sorted(data["times"])


def max_in_window(times: Sequence[float], width: float) -> int:
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= width:
            j += 1
        best = max(best, i - j + 1)
    return best


def max_per_calendar_second(times: Sequence[float]) -> int:
    counts: dict[int, int] = {}
    for t in times:
        counts[int(t)] = counts.get(int(t), 0) + 1
    return max(counts.values(), default=0)


# =============================================================================== main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="ingest,e2e,outbound", help="parts to run (default: all)")
    p.add_argument(
        "--db",
        default="sqlite,postgres",
        help="databases for the ingest part (default: both); `none` adds a diagnostic run that stores "
        "nothing (what chatgate's path costs without a database)",
    )
    p.add_argument("--duration", type=float, default=12, help="seconds per measured wrk run (default 12)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of wrk warm-up per server (default 2)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="repeat the ingest set, report medians (default 3: single runs move with the machine's spells)",
    )
    p.add_argument(
        "--server-workers", type=int, default=1, help="server processes for the bare app and chatgate"
    )
    p.add_argument(
        "--grouped",
        action="store_true",
        help="also run the issue's reference: the bare app with grouped durable commits (bench/grouped_app.py)",
    )
    p.add_argument(
        "--pg-unix-socket",
        action="store_true",
        help="reach PostgreSQL through its Unix socket, as a co-located deployment can (default: TCP on 127.0.0.1)",
    )
    p.add_argument(
        "--pg-set",
        action="append",
        type=pg_setting,
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL server setting for the bench's server (repeatable; durability settings stay on)",
    )
    p.add_argument(
        "--pg-drop",
        type=pg_drop_list,
        default=[],
        metavar=",".join(PG_DROPS),
        help="what-if: drop these guards of raw_events in the bench's PostgreSQL database before the run",
    )
    p.add_argument(
        "--references-head-holding",
        action="store_true",
        help="what-if: serve the bare and grouped apps with chatgate's HTTP protocol (one write per "
        "response) instead of uvicorn's own",
    )
    p.add_argument("--no-aiogram", dest="aiogram", action="store_false", help="skip the aiogram comparison")
    p.add_argument(
        "--pin-postgres",
        action="store_true",
        help="what-if: PostgreSQL on a core of its own (CPU 1), every server and wrk on CPU 0",
    )
    p.add_argument(
        "--no-protocol-reference",
        dest="protocol_reference",
        action="store_false",
        help="skip the bare answer in uvicorn's HTTP protocol (no ASGI), the level at which chatgate "
        "answers provider webhooks",
    )
    p.add_argument(
        "--simple-requests",
        type=int,
        default=60000,
        help="distinct requests for the bare/aiogram runs (they cycle; default 60000)",
    )
    p.add_argument("--e2e-rate", type=float, default=500, help="events per second (default 500)")
    p.add_argument("--e2e-duration", type=float, default=10, help="seconds (default 10)")
    p.add_argument(
        "--e2e-rounds",
        type=int,
        default=3,
        help="e2e runs, each on a fresh server; the median p99 is shown (default 3)",
    )
    p.add_argument(
        "--e2e-drain",
        type=float,
        default=20,
        help="max seconds to wait after the last send for events to arrive (default 20)",
    )
    p.add_argument(
        "--outbound-messages",
        type=int,
        default=3000,
        help="sends, limits off (default 3000: at 2,000/s, 1,000 sends last half a second, mostly start-up)",
    )
    p.add_argument(
        "--limited-rate",
        type=float,
        default=20,
        help="rate_limit_per_second for the limits-on run (default 20: below what one worker sends "
        "here, so the limit binds)",
    )
    p.add_argument("--limited-messages", type=int, default=120, help="sends with the limit on (default 120)")
    p.add_argument(
        "--outbound-timeout",
        type=float,
        default=30,
        help="stop timing a send run after this many seconds; the rate counts what was sent (default 30)",
    )
    p.add_argument("--profile", type=Path, help="py-spy the chatgate processes, raw stacks into this dir")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="CHATGATE_NAME=VALUE",
        help="experiment: extra setting for every chatgate process (printed above the table)",
    )
    p.add_argument("--json", type=Path, help="also write all raw figures here")
    p.add_argument(
        "--commit",
        metavar="REV",
        help="measure src/ as of this commit (exported with `git archive`, put first on PYTHONPATH) "
        "instead of the working tree, which others may be editing meanwhile",
    )
    args = p.parse_args(argv)
    for item in args.set:
        if "=" not in item or not item.startswith("CHATGATE_"):
            p.error(f"--set {item!r}: expected CHATGATE_NAME=VALUE")
    args.settings = dict(item.split("=", 1) for item in args.set)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    args.db = [x.strip() for x in args.db.split(",") if x.strip()]
    for part in args.only:
        if part not in ("ingest", "e2e", "outbound"):
            p.error(f"--only: unknown part {part!r}")
    for db in args.db:
        if db not in ("sqlite", "postgres", "none"):
            p.error(f"--db: unknown database {db!r}")
    if args.connections < args.threads:
        p.error("--connections must be >= --threads")
    return args


def preflight(args: argparse.Namespace) -> list[str]:
    problems = []
    if "ingest" in args.only and shutil.which("wrk") is None:
        problems.append("wrk is not installed: apt-get install -y wrk")
    if "ingest" in args.only and "postgres" in args.db and os.geteuid() != 0:
        problems.append("--db postgres needs root (PostgreSQL runs as user postgres); or use --db sqlite")
    if not VENV_PYTHON.exists():
        problems.append(f"{VENV_PYTHON} missing: create the project venv first")
    if args.pin_postgres and not {0, 1} <= os.sched_getaffinity(0):
        problems.append("--pin-postgres needs CPUs 0 and 1")
    return problems


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def export_src(commit: str, work: Path) -> tuple[str, str]:
    """(short hash, directory for PYTHONPATH) of `commit`'s `src`, exported under `work`."""
    rev = git("rev-parse", "--short", f"{commit}^{{commit}}")
    if not rev:
        raise SystemExit(f"bench: {commit!r} is not a commit")
    code = work / f"src-{rev}"
    if not code.exists():  # exported once: `bench/ab.py REV --a REV` measures a commit against itself
        code.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    return rev, str(code / "src")


def select_code(args: argparse.Namespace, work: Path) -> str:
    """Which chatgate is measured; with --commit, export it and make every process import it."""
    if not args.commit:
        head = git("rev-parse", "--short", "HEAD") or "?"
        dirty = bool(git("status", "--porcelain", "--", "src"))
        return f"working tree at {head}" + (" + uncommitted changes in src/" if dirty else "")
    rev, src = export_src(args.commit, work)
    sys.path.insert(0, src)  # before the editable install's path, for the in-process setup
    os.environ["PYTHONPATH"] = src + (
        os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""
    )
    return f"commit {rev} (exported; working tree not used)"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problems = preflight(args)
    if problems:
        print("bench: cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if "ingest" in args.only and args.aiogram and not AIOGRAM_PYTHON.exists():
        print(
            f"bench: the aiogram comparison needs its own venv; install with:\n  {AIOGRAM_HINT}\n"
            "  (or pass --no-aiogram)",
            file=sys.stderr,
        )
        return 2
    if args.pin_postgres:
        # Everything this starts inherits CPU 0 (the servers, wrk, aiogram); PostgreSQL is moved
        # to CPU 1 once it runs.
        os.sched_setaffinity(0, {0})
    work = Path(tempfile.mkdtemp(prefix="chatgate-bench-"))
    report = Report()
    pg_holder: dict[str, Any] = {}
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    log(f"work directory {work}")
    code = "?"
    # SIGTERM: clean up like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        code = select_code(args, work)
        log(f"measuring chatgate: {code}")
        if "ingest" in args.only:
            ingest(args, work, report, pg_holder)
        if "e2e" in args.only:
            e2e(args, work, report)
        if "outbound" in args.only:
            outbound(args, work, report)
    finally:
        server = pg_holder.get("server")
        if server is not None:
            server.close()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - started
    print()
    print(f"chatgate bench, {stamp}, {machine()}")
    print(f"code: {code}")
    print(
        f"wrk -t{args.threads} -c{args.connections}, {args.duration:g} s runs after {args.warmup:g} s warm-up; "
        f"total {took:.0f} s"
    )
    if args.set:
        print(f"NON-DEFAULT SETTINGS: {' '.join(args.set)}")
    if args.pg_drop:
        print(f"NON-DEFAULT SCHEMA (PostgreSQL): dropped {', '.join(args.pg_drop)} of raw_events")
    if args.pg_unix_socket:
        print("PostgreSQL reached through its Unix socket")
    if args.pg_set:
        print(f"NON-DEFAULT PostgreSQL SETTINGS: {' '.join(args.pg_set)}")
    if args.references_head_holding:
        print("NON-DEFAULT REFERENCES: the bare and grouped apps served with chatgate's HTTP protocol")
    if args.pin_postgres:
        print("NON-DEFAULT CPUS: PostgreSQL on CPU 1; the servers, wrk and aiogram on CPU 0")
    print()
    print(report.render())
    if report.notes:
        print()
        for note in report.notes:
            print(f"* {note}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": [r.__dict__ for r in report.rows],
                    "notes": report.notes,
                    "raw": report.raw,
                    "machine": machine(),
                    "when": stamp,
                    "code": code,
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
