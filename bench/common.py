"""Helpers shared by the bench scripts (not part of the chatgate package).

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

INBOUND_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OUTBOUND_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
TELEGRAM_SECRET_TOKEN = "bench-secret-token-0123456789"  # aiogram's X-Telegram-Bot-Api-Secret-Token

_KEY = base64.b64decode(INBOUND_SECRET.removeprefix("whsec_"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sign(msg_id: str, timestamp: int, body: bytes, key: bytes = _KEY) -> str:
    """Standard Webhooks v1 signature (same as chatgate.delivery.signing.sign, inlined for speed)."""
    mac = hmac.digest(key, f"{msg_id}.{timestamp}.".encode() + body, "sha256")
    return "v1," + base64.b64encode(mac).decode("ascii")


def webhook_body(message_id: str, chat: str, text: str = "hello from the bench") -> bytes:
    return json.dumps(
        {
            "type": "message.received",
            "message": {"id": message_id, "text": text},
            "from": {"id": f"user-{chat}", "name": "Alice Example"},
            "conversation": {"id": chat, "kind": "private", "title": "Alice"},
        },
        separators=(",", ":"),
    ).encode()


def container_env(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    """CHATGATE_* settings for a bench server: everything else stays at its default."""
    env = {
        "CHATGATE_DATA_DIR": str(data_dir),
        # /in/ is exempt from the per-IP limit anyway; keep the rest of the API out of the way too
        "CHATGATE_RATE_LIMIT_IP_PER_SECOND": "1000000",
        "CHATGATE_RATE_LIMIT_IP_BURST": "1000000",
        "CHATGATE_RATE_LIMIT_KEY_PER_SECOND": "1000000",
        "CHATGATE_RATE_LIMIT_KEY_BURST": "1000000",
        "CHATGATE_OUTBOUND_ALLOW_HOSTS": "127.0.0.1",
        "CHATGATE_OUTBOUND_ALLOW_HTTP": "true",
    }
    if database_url:
        env["CHATGATE_DATABASE_URL"] = database_url
        # A shared database: chatgate wants its keys in the environment, not in its data dir.
        env["CHATGATE_KEYRING_KEYS"] = "1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    env.update(extra)
    return env


def apply_env(env: Mapping[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith("CHATGATE_")]:
        del os.environ[key]
    os.environ.update(env)


def build_container(settings: Any) -> Any:
    """`Container(settings)`: the one place the bench builds chatgate's object graph."""
    from chatgate.bootstrap import Container

    return Container(settings)


# ------------------------------------------------------------------------------ processes


class Proc:
    """A child process in its own session, stopped with SIGTERM then SIGKILL (only this one)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path,
        cwd: Path = REPO,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
        full_env.update(env or {})
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(5)
        self._log.close()

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_http(url: str, proc: Proc | None = None, timeout: float = 60.0) -> None:
    """Wait until `url` answers any HTTP status (bounded)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.argv[1:3]} exited early:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    tail = proc.tail() if proc is not None else ""
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s ({last})\n{tail}")


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds used so far by `pid` and its running child processes (the
    SQLite ingest writer): a server's whole cost, whichever process does the work."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    total = (int(fields[11]) + int(fields[12])) / ticks
    for child in children(pid):
        try:
            total += cpu_seconds(child)
        except OSError:  # exited meanwhile
            continue
    return total


def children(pid: int) -> list[int]:
    """The processes `pid` has started and that still run."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid`'s main thread: the event loop, which caps an asyncio server."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
