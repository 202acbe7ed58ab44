"""The live stream across two real API processes: an event committed by one process reaches
a client streaming from the other, through the Redis bridge."""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.delivery import signing
from tests.test_cli import env_for, free_port
from tests.webhook_helpers import INBOUND_SECRET, OUTBOUND_SECRET, message_payload


def _wait_ready(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{base} did not become ready")


@pytest.fixture
def two_apis(tmp_path: Path, redis_server: Any) -> Iterator[tuple[str, str, str]]:
    shared = {
        "CHATGATE_REDIS_URL": redis_server.url,
        "CHATGATE_KEYRING_KEYS": f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
        "CHATGATE_JWT_SECRET": secrets.token_urlsafe(40),
        "CHATGATE_LOG_LEVEL": "WARNING",
    }
    boot = subprocess.run(
        [sys.executable, "-m", "chatgate", "bootstrap", "--email", "owner@example.com"],
        env=env_for(tmp_path, **shared),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert boot.returncode == 0, boot.stderr
    key = re.search(r"API key  (cgk_\S+)", boot.stdout)
    assert key is not None
    processes: list[subprocess.Popen[str]] = []
    bases: list[str] = []
    try:
        for workers in ("true", "false"):  # API 1 processes inbound events; API 2 only serves
            port = free_port()
            env = env_for(tmp_path, CHATGATE_RUN_WORKERS_IN_API=workers, **shared)
            process = subprocess.Popen(
                [sys.executable, "-m", "chatgate", "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            processes.append(process)
            bases.append(f"http://127.0.0.1:{port}")
            _wait_ready(bases[-1], process)
        yield bases[0], bases[1], key.group(1)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_an_event_committed_by_one_process_streams_from_the_other(two_apis: tuple[str, str, str]) -> None:
    first, second, api_key = two_apis
    headers = {"X-API-Key": api_key}
    integration = httpx.post(
        f"{first}/v1/integrations",
        json={
            "kind": "webhook",
            "name": "site",
            "credentials": {"inbound_secret": INBOUND_SECRET, "outbound_secret": OUTBOUND_SECRET},
        },
        headers=headers,
    ).json()
    body = json.dumps(message_payload("across processes", message_id="m-x")).encode()
    signed = signing.headers(INBOUND_SECRET, "evt-x", int(time.time()), body)
    with httpx.stream(
        "GET", f"{second}/v1/stream", params={"types": "message.received"}, headers=headers, timeout=30
    ) as stream:
        assert stream.status_code == 200
        sent_at = time.monotonic()
        accepted = httpx.post(f"{first}{integration['inbound_path']}", content=body, headers=signed)
        assert accepted.status_code == 200
        event: dict[str, Any] | None = None
        for line in stream.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                break
            if time.monotonic() - sent_at > 20:
                break
    assert event is not None, "the event never reached the other process's stream"
    assert event["type"] == "message.received"
    assert event["data"]["text"] == "across processes"
    assert time.monotonic() - sent_at < 10
