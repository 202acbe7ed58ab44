"""Helpers for the scaled-mode test: chatgate processes, a receiving site, load with retries.

Everything here talks to 127.0.0.1 only, and every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from chatgate.delivery import signing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scaled_env(
    *, data_dir: Path, database_url: str, redis_url: str, rabbitmq_url: str, **extra: str
) -> dict[str, str]:
    """The environment every process of one deployment shares (API, worker, CLI)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "CHATGATE_DATABASE_URL": database_url,
            "CHATGATE_REDIS_URL": redis_url,
            "CHATGATE_RABBITMQ_URL": rabbitmq_url,
            "CHATGATE_KEYRING_KEYS": f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
            "CHATGATE_JWT_SECRET": secrets.token_urlsafe(48),
            "CHATGATE_DATA_DIR": str(data_dir),
            "CHATGATE_RUN_WORKERS_IN_API": "false",
            "CHATGATE_OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
            "CHATGATE_OUTBOUND_ALLOW_HTTP": "true",
            "CHATGATE_SWEEPER_INTERVAL_SECONDS": "0.5",
            "CHATGATE_REDISPATCH_AFTER_SECONDS": "3",
            "CHATGATE_RATE_LIMIT_KEY_PER_SECOND": "100000",
            "CHATGATE_RATE_LIMIT_KEY_BURST": "100000",
            "CHATGATE_RATE_LIMIT_IP_PER_SECOND": "100000",
            "CHATGATE_RATE_LIMIT_IP_BURST": "100000",
            "CHATGATE_LOG_LEVEL": "WARNING",
            "CHATGATE_LOG_JSON": "false",
        }
    )
    env.update(extra)
    return env


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """One `python -m chatgate ...` child; its output goes to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    @classmethod
    def start(
        cls, name: str, args: list[str], env: Mapping[str, str], cwd: Path, port: int | None = None
    ) -> Proc:
        log_path = cwd / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "chatgate", *args],
                env=dict(env),
                cwd=cwd,  # no stray .env from the repository
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return cls(name, popen, log_path, port)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def base(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def sigkill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


async def wait_ready(proc: Proc, timeout: float = 60.0) -> None:
    """Until GET /health/ready answers 200 (database, keyring, Redis, broker all fine)."""
    deadline = time.monotonic() + timeout
    last = ""
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited early:\n{proc.tail()}")
            try:
                response = await client.get(f"{proc.base}/health/ready")
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(0.2)
    raise AssertionError(f"{proc.name} not ready within {timeout}s (last: {last})\n{proc.tail()}")


def bootstrap_tenant(env: Mapping[str, str], cwd: Path, email: str, slug: str) -> tuple[str, str]:
    """`chatgate bootstrap`; returns (tenant id, API key) parsed from what it prints."""
    result = subprocess.run(
        [sys.executable, "-m", "chatgate", "bootstrap", "--email", email, "--slug", slug, "--name", slug],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    key = re.search(r"API key  (cgk_\S+)", result.stdout)
    tenant = re.search(r"tenant   \S+ \((\S+)\)", result.stdout)
    assert key is not None, result.stdout
    assert tenant is not None, result.stdout
    return tenant.group(1), key.group(1)


# --------------------------------------------------------------------------- the receiving site


@dataclass
class Site:
    """A tenant's site on 127.0.0.1: answers every send after `delay`, counts them per message."""

    delay: float = 0.0
    url: str = ""
    received: Counter[str] = field(default_factory=Counter)  # chatgate message id -> deliveries
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            message_id = str(json.loads(body).get("id"))
            self.received[message_id] += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.json_response({"message_id": f"site-{secrets.token_hex(8)}"})

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def duplicates(self) -> dict[str, int]:
        return {m: n for m, n in self.received.items() if n > 1}


# --------------------------------------------------------------------------- load with retries


@dataclass
class LoadStats:
    """What the "providers" and "clients" saw: answers that were not an acknowledgement."""

    non_2xx: Counter[str] = field(default_factory=Counter)  # "kind status" -> count
    transport_errors: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def not_acknowledged(self) -> int:
        return sum(self.non_2xx.values()) + sum(self.transport_errors.values())


async def until_acknowledged(
    kind: str,
    call: Callable[[], Awaitable[httpx.Response]],
    stats: LoadStats,
    *,
    attempts: int = 40,
    pause: float = 0.5,
) -> httpx.Response:
    """Retry like a provider or a careful client would (same ids) until a 2xx answer, bounded."""
    last = ""
    for attempt in range(attempts):
        if attempt:
            stats.retries += 1
            await asyncio.sleep(pause)
        started = time.monotonic()
        try:
            response = await call()
        except httpx.HTTPError as exc:
            stats.transport_errors[f"{kind} {type(exc).__name__}"] += 1
            last = repr(exc)
            continue
        stats.latencies.append(time.monotonic() - started)
        if 200 <= response.status_code < 300:
            return response
        stats.non_2xx[f"{kind} {response.status_code}"] += 1
        last = f"{response.status_code} {response.text[:300]}"
    raise AssertionError(f"{kind}: not acknowledged after {attempts} attempts (last: {last})")


def signed_webhook(secret: str, event_id: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Body and Standard Webhooks headers, signed now (a provider's retry signs again)."""
    body = json.dumps(payload).encode()
    headers = signing.headers(secret, event_id, int(time.time()), body)
    headers["content-type"] = "application/json"
    return body, headers


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
