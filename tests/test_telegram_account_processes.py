"""One owner per live Telegram account, with real OS processes: two `chatgate worker` processes on
one PostgreSQL database run user accounts against the accounts sandbox (one `FakeTelegram` served
over HTTP by this test process, `CHATGATE_TELEGRAM_ACCOUNT_SANDBOX_URL`). The API (in this test
process, no in-process workers) logs the account in; exactly one worker takes the lease and
connects; the owner is SIGKILLed; the other worker takes the account over within 30 s (lease 5 s
+ scan 0.5 s), Telegram never sees two live clients on the session, and every message delivered
before, during and after the takeover reaches the tenant exactly once."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.providers.telegram_user.fake import FakeTelegram
from chatgate.providers.telegram_user.remote import remote_factory
from chatgate.sandbox.telegram_accounts import SandboxTelegramAccounts
from chatgate.services.telegram_accounts import SESSION, lease_name
from tests.account_helpers import API_HASH, login, new_phone, received_texts
from tests.asgi_server import serve_asgi
from tests.conftest import Api, TenantHandle, make_settings, running_api, unique
from tests.scaled_harness import Proc
from tests.servers import PostgresServer

pytestmark = pytest.mark.slow

LEASE_SECONDS = 5
SCAN_SECONDS = 0.5
OVERALL_SECONDS = 150.0


def _env(database_url: str, sandbox_url: str, keyring: str, jwt: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "CHATGATE_DATABASE_URL": database_url,
            "CHATGATE_KEYRING_KEYS": keyring,
            "CHATGATE_JWT_SECRET": jwt,
            "CHATGATE_DATA_DIR": str(data_dir),
            "CHATGATE_AUTO_MIGRATE": "false",
            "CHATGATE_TELEGRAM_API_ID": "12345",
            "CHATGATE_TELEGRAM_API_HASH": API_HASH,
            "CHATGATE_TELEGRAM_ACCOUNT_SANDBOX_URL": sandbox_url,
            "CHATGATE_TELEGRAM_ACCOUNT_LEASE_SECONDS": str(LEASE_SECONDS),
            "CHATGATE_TELEGRAM_ACCOUNT_SCAN_INTERVAL_SECONDS": str(SCAN_SECONDS),
            "CHATGATE_SWEEPER_INTERVAL_SECONDS": "0.5",
            "CHATGATE_REDISPATCH_AFTER_SECONDS": "2",
            "CHATGATE_JOB_LEASE_SECONDS": "5",
            "CHATGATE_LOG_LEVEL": "INFO",
            "CHATGATE_LOG_JSON": "false",
        }
    )
    return env


async def _wait(check: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_a_sigkilled_worker_process_hands_its_account_over(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database_url = await asyncio.to_thread(postgres_server.create_database, unique("cg_accounts_"))
    keyring = f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    jwt = secrets.token_urlsafe(48)
    fake = FakeTelegram()
    phone = new_phone()
    fake.add_account(phone, "Owned")
    sender = fake.add_user("Sender", username="sender_" + phone[-6:], phone=new_phone())
    sandbox = SandboxTelegramAccounts(fake)
    procs: list[Proc] = []
    settings = make_settings(
        tmp_path / "api",
        database_url,
        keyring_keys=keyring,
        jwt_secret=jwt,
        run_workers_in_api=False,  # only the two worker processes may run the account
        telegram_api_id=12345,
        telegram_api_hash=API_HASH,
        telegram_account_lease_seconds=LEASE_SECONDS,
        telegram_account_scan_interval_seconds=SCAN_SECONDS,
    )
    try:
        async with (
            asyncio.timeout(OVERALL_SECONDS),
            serve_asgi(sandbox.app) as sandbox_url,
            running_api(settings, "postgresql", account_clients=remote_factory(sandbox_url)) as api,
        ):
            env = _env(database_url, sandbox_url, keyring, jwt, tmp_path / "workers")
            (tmp_path / "workers").mkdir()
            procs.extend(Proc.start(name, ["worker"], env, tmp_path) for name in ("worker-a", "worker-b"))
            await _scenario(api, fake, sandbox_url, procs, phone, sender.id)
    except BaseException:
        for proc in procs:
            print(f"--- {proc.name} (pid {proc.pid}) ---\n{proc.tail(40)}")
        raise
    finally:
        for proc in procs:
            proc.stop(timeout=10)


async def _holder(api: Api, integration_id: str) -> str | None:
    """The lease row's owner (`host:pid:…`) while the lease is unexpired."""
    owner = await api.container.leases.holder(lease_name(integration_id), api.container.clock())
    return None if owner is None else str(owner)


def _pid_of(owner: str) -> int:
    return int(owner.split(":")[1])


async def _scenario(
    api: Api,
    fake: FakeTelegram,
    sandbox_url: str,
    procs: list[Proc],
    phone: str,
    sender_id: int,
) -> None:
    tenant: TenantHandle = await api.tenant()
    account = await login(api, tenant, fake, phone)
    integration_id = account["id"]
    integration = await api.container.integrations.get(tenant.id, integration_id)
    session = (await api.container.integrations.credentials(integration))[SESSION]
    pids = {p.pid: p for p in procs}
    peak = 0

    async def watch() -> None:  # Telegram's view, sampled all along: never two clients at once
        nonlocal peak
        while True:
            peak = max(peak, fake.connections(session))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as http:

        async def deliver(texts: list[str], pause: float = 0.0) -> None:
            for message in texts:
                response = await http.post(
                    "/sandbox/messages", json={"to_phone": phone, "from_user_id": sender_id, "text": message}
                )
                assert response.status_code == 200, response.text
                await asyncio.sleep(pause)

        async def owner_pid() -> int | None:
            owner = await _holder(api, integration_id)
            if owner is None or fake.connections(session) != 1:
                return None
            pid = _pid_of(owner)
            assert pid in pids, owner
            return pid

        try:
            victim_pid: int = await _wait(owner_pid, "one worker to run the account", 45)
            # Both workers keep scanning; the owner stays the only client for a whole lease.
            for _ in range(int(LEASE_SECONDS / SCAN_SECONDS) + 2):
                await asyncio.sleep(SCAN_SECONDS)
                assert await owner_pid() == victim_pid
            state = (await http.get("/sandbox/state")).json()
            assert state["connections"].get(session) == 1, state

            before = [f"before {i}" for i in range(3)]
            await deliver(before)

            async def stored(count: int) -> list[str] | None:
                texts = await received_texts(api, tenant, integration_id)
                return texts if len(texts) >= count else None

            await _wait(lambda: stored(len(before)), "the first messages", 20)

            os.kill(victim_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            pids[victim_pid].popen.wait(timeout=10)
            survivor = next(p for p in procs if p.pid != victim_pid)

            async def dropped() -> bool:  # its TCP connections died with it: so did its client
                return fake.connections(session) == 0

            await _wait(dropped, "the sandbox to notice the dead client", 5)
            # Nobody runs the account now: Telegram keeps these for the session (getDifference).
            during = [f"during {i}" for i in range(4)]
            await deliver(during, pause=0.4)

            async def taken_over() -> int | None:
                pid = await owner_pid()
                return pid if pid is not None and pid != victim_pid else None

            new_pid = await _wait(taken_over, "the takeover", 30)
            takeover = time.monotonic() - killed_at
            print(
                f"\ntakeover after SIGKILL of pid {victim_pid}: {takeover:.2f} s by pid {new_pid} "
                f"(lease {LEASE_SECONDS} s, scan {SCAN_SECONDS} s)"
            )
            assert new_pid == survivor.pid
            assert takeover < 30

            after = [f"after {i}" for i in range(3)]
            await deliver(after)
            expected = before + during + after
            await _wait(lambda: stored(len(expected)), "every message", 30)
            await asyncio.sleep(2)  # a late duplicate would show up by now
            texts = await received_texts(api, tenant, integration_id)
            assert Counter(texts) == Counter(expected), texts
            assert sorted(texts) == sorted(expected)

            state = (await http.get("/sandbox/state")).json()
            assert state["duplicated_sessions"] == 0, state
            assert fake.duplicated_sessions == 0
            assert fake.connections(session) == 1
            assert peak == 1, f"Telegram saw {peak} clients on the session at once"
            assert survivor.alive()
            got = await api.client.get(f"/v1/integrations/{integration_id}", headers=tenant.key_headers)
            assert got.json()["status"] == "active"
        finally:
            watcher.cancel()
