"""The `chatgate` command as an operator uses it: migrate, bootstrap, serve, keys rotate."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BOT_TOKEN = "7000000042:TESTCliRotationFakeToken_abcdefghijklmnop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env.update({"CHATGATE_DATA_DIR": str(data_dir), "CHATGATE_LOG_JSON": "true"}, **extra)
    return env


def chatgate(data_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatgate", *args],
        env=env_for(data_dir, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "chatgate", "serve", "--port", str(port)],
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
            if process.poll() is not None:
                pytest.fail(f"serve exited early: {process.stderr.read() if process.stderr else ''}")
        else:
            pytest.fail("serve did not become ready within 60 s")
        yield base, tmp_path, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_invalid_settings_fail_fast_with_a_clear_message(tmp_path: Path) -> None:
    result = chatgate(tmp_path, "migrate", CHATGATE_PORT="eighty", CHATGATE_KEYRING_BACKEND="vault")
    assert result.returncode == 2
    assert "CHATGATE_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_reports_the_revision(tmp_path: Path) -> None:
    result = chatgate(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert re.search(r"empty -> \w+", result.stdout)
    assert (tmp_path / "chatgate.db").exists()


def test_serve_bootstrap_and_rotate_keys_while_running(
    server: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base, data_dir, process = server
    assert httpx.get(f"{base}/docs").status_code == 200
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    keyring = data_dir / "keyring.json"
    assert keyring.stat().st_mode & 0o777 == 0o600
    assert (data_dir / "jwt.secret").stat().st_mode & 0o777 == 0o600

    boot = chatgate(data_dir, "bootstrap", "--email", "owner@example.com")
    assert boot.returncode == 0, boot.stderr
    key = re.search(r"API key  (cgk_\S+)", boot.stdout)
    assert key is not None
    headers = {"X-API-Key": key.group(1)}
    assert httpx.get(f"{base}/v1/me", headers=headers).json()["role"] is None

    created = httpx.post(
        f"{base}/v1/integrations",
        json={"kind": "webhook", "name": "site", "credentials": {"outbound_secret": BOT_TOKEN}},
        headers=headers,
    )
    assert created.status_code == 201, created.text

    rotated = chatgate(data_dir, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "new primary key v2: 1 secrets re-encrypted" in rotated.stdout

    # The running server picks up the new key version for new secrets without a restart.
    second = httpx.post(
        f"{base}/v1/integrations",
        json={"kind": "webhook", "name": "site 2", "credentials": {"outbound_secret": BOT_TOKEN + "x"}},
        headers=headers,
    )
    assert second.status_code == 201
    status = chatgate(data_dir, "keys", "status")
    assert "integrations.credentials_sealed: v2: 2" in status.stdout, status.stdout

    process.terminate()
    process.wait(timeout=20)
    raw = b"".join(p.read_bytes() for p in data_dir.glob("chatgate.db*"))
    assert BOT_TOKEN.encode() not in raw
    out = (process.stdout.read() if process.stdout else "") + (
        process.stderr.read() if process.stderr else ""
    )
    assert BOT_TOKEN not in out
    assert key.group(1) not in out
    assert f"chatgate is starting at {base}" in out


def test_worker_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "chatgate", "worker"],
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        assert process.stdout is not None
        seen = ""
        while time.monotonic() < deadline and not re.search(r"worker \S+ started: inbound, send", seen):
            line = process.stdout.readline()
            if not line:
                break  # the worker exited
            seen += line
        assert re.search(r"worker \S+ started: inbound, send", seen), seen
        process.terminate()
        assert process.wait(timeout=20) == 0
        assert "worker stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_demo_mode_connects_a_sandbox_bot_and_receives_its_messages(tmp_path: Path) -> None:
    """`serve --demo` runs the provider sandboxes beside the API: a bot made in the sandbox
    connects (polling mode: no public URL) and a message to it reaches the conversations API."""
    port, sandbox_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatgate",
            "serve",
            "--demo",
            "--port",
            str(port),
            "--sandbox-port",
            str(sandbox_port),
        ],
        env=env_for(
            tmp_path,
            CHATGATE_TELEGRAM_POLL_SCAN_INTERVAL_SECONDS="0.2",
            CHATGATE_TELEGRAM_POLL_TIMEOUT_SECONDS="1",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base, telegram = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sandbox_port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
        boot = chatgate(tmp_path, "bootstrap", "--email", "demo@example.com")
        key = re.search(r"API key  (cgk_\S+)", boot.stdout)
        assert key is not None, boot.stdout + boot.stderr
        headers = {"X-API-Key": key.group(1)}
        bot = httpx.post(f"{telegram}/sandbox/bots", json={"username": "demo_bot"}).json()
        created = httpx.post(
            f"{base}/v1/integrations",
            json={"kind": "telegram_bot", "name": "demo", "credentials": {"bot_token": bot["token"]}},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "active"
        assert created.json()["provider_status"]["mode"] == "polling"
        update = {
            "message": {
                "message_id": 1,
                "date": 1_700_000_000,
                "chat": {"id": 4242, "type": "private", "first_name": "Ann"},
                "from": {"id": 4242, "is_bot": False, "first_name": "Ann"},
                "text": "hello from the sandbox",
            }
        }
        assert httpx.post(f"{telegram}/sandbox/bots/{bot['id']}/updates", json=update).status_code == 201
        texts: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "hello from the sandbox" not in texts:
            conversations = httpx.get(f"{base}/v1/conversations", headers=headers).json()["data"]
            for conversation in conversations:
                page = httpx.get(f"{base}/v1/conversations/{conversation['id']}/messages", headers=headers)
                texts += [m["text"] for m in page.json()["data"]]
            time.sleep(0.3)
        assert "hello from the sandbox" in texts

        # A Telegram user account logs in against the accounts sandbox (phone → code → active).
        accounts = f"http://127.0.0.1:{sandbox_port + 3}"
        assert httpx.post(f"{accounts}/sandbox/accounts", json={"phone": "+15550003333"}).status_code == 200
        login = httpx.post(f"{base}/v1/telegram/accounts", json={"phone": "+15550003333"}, headers=headers)
        assert login.status_code == 201, login.text
        assert login.json()["login"]["state"] == "code_sent"
        code = httpx.get(f"{accounts}/sandbox/code", params={"phone": "+15550003333"}).json()["code"]
        done = httpx.post(
            f"{base}/v1/telegram/accounts/{login.json()['id']}/code", json={"code": code}, headers=headers
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "active"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_settling_the_heap_freezes_start_up_and_collects_young_objects_less_often() -> None:
    import gc

    from chatgate.cli import GC_YOUNG_THRESHOLD, settle_heap

    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert before[0] < GC_YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
