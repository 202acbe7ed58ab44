"""One owner per live Telegram account: two chatgate processes ("workers", two Containers) on one
SQLite database and one FakeTelegram. Only the lease holder runs the account (Telegram's
AuthKeyDuplicated rule never fires); when the owner is killed the other takes over within lease +
scan interval, and the messages Telegram delivers before, during and after the takeover each reach
the tenant exactly once; sends made through the non-owner go out through the owner."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from chatgate.config import Settings
from chatgate.providers.telegram_user.fake import FakeAccountClient, FakeTelegram
from chatgate.services.telegram_accounts import SESSION, lease_name
from tests.account_helpers import (
    Stopwatch,
    account_api,
    account_settings,
    live_client,
    login,
    message_status,
    new_phone,
    received_texts,
    until,
)
from tests.conftest import Api
from tests.webhook_helpers import eventually

LEASE_SECONDS = 3
SCAN_SECONDS = 0.2


async def _owner(first: Api, second: Api, integration_id: str) -> tuple[Api, Api]:
    def check() -> tuple[Api, Api] | None:
        a, b = live_client(first, integration_id), live_client(second, integration_id)
        if a is not None and b is None:
            return first, second
        if b is not None and a is None:
            return second, first
        assert a is None or b is None, "two processes run the same account"
        return None

    found: tuple[Api, Api] = await until(check, timeout=15)
    return found


async def test_one_owner_and_a_takeover_without_loss_or_duplicates(
    settings_factory: Callable[..., Settings],
) -> None:
    fake = FakeTelegram()
    phone = new_phone()
    fake.add_account(phone, "Owned")
    sender = fake.add_user("Sender", username="sender_" + phone[-6:], phone=new_phone())
    settings = account_settings(
        settings_factory,
        telegram_account_lease_seconds=LEASE_SECONDS,
        telegram_account_scan_interval_seconds=SCAN_SECONDS,
    )
    async with account_api(settings, fake) as first, account_api(settings, fake) as second:
        tenant = await first.tenant()
        account = await login(first, tenant, fake, phone)
        integration_id = account["id"]
        owner, other = await _owner(first, second, integration_id)
        credentials = await first.container.integrations.credentials(
            await first.container.integrations.get(tenant.id, integration_id)
        )
        session = credentials[SESSION]

        # Both processes keep scanning; only the lease holder runs the account.
        for _ in range(int(LEASE_SECONDS / SCAN_SECONDS) + 5):
            await asyncio.sleep(SCAN_SECONDS)
            assert live_client(other, integration_id) is None
            assert fake.connections(session) == 1
        holder = await owner.container.leases.holder(lease_name(integration_id), owner.container.clock())
        assert holder == owner.container.worker_id

        before = [f"before {i}" for i in range(3)]
        for text in before:
            await fake.deliver_message(phone, sender, text)

        # A send accepted by the process that does not run the account goes out from the owner.
        response = await other.client.post(
            "/v1/messages",
            json={"integration_id": integration_id, "to": f"@{sender.username}", "text": "from any process"},
            headers=tenant.key_headers,
        )
        assert response.status_code == 202, response.text
        sent = await message_status(other, tenant, response.json()["message"]["id"])
        assert sent["status"] == "sent", sent
        assert [r.text for r in fake.sent] == ["from any process"]

        async def stored(count: int) -> list[str] | None:
            texts = await received_texts(other, tenant, integration_id)
            return texts if len(texts) >= count else None

        await eventually(lambda: stored(len(before)))

        # Kill the owner: it stops without releasing its lease (and never takes it again).
        owner.container.account_runtime.abandon()
        clock = Stopwatch()
        await until(lambda: fake.connections(session) == 0)
        during = [f"during {i}" for i in range(3)]
        for text in during:  # nobody runs the account: Telegram keeps these for the session
            await fake.deliver_message(phone, sender, text)
            await asyncio.sleep(0.3)

        await until(lambda: live_client(other, integration_id), timeout=30)
        takeover = clock.seconds
        print(f"\ntakeover after the owner was killed: {takeover:.2f} s (lease {LEASE_SECONDS} s)")
        assert takeover < 30
        assert takeover < LEASE_SECONDS + 2 * SCAN_SECONDS + 2
        assert live_client(owner, integration_id) is None

        after = [f"after {i}" for i in range(3)]
        for text in after:
            await fake.deliver_message(phone, sender, text)

        expected = before + during + after
        texts = await eventually(lambda: stored(len(expected)), timeout=20)
        await asyncio.sleep(1.5)  # a late duplicate would show up by now
        texts = await received_texts(other, tenant, integration_id)
        assert Counter(texts) == Counter(expected), texts
        assert texts == expected  # and in order

        got = await other.client.get(f"/v1/integrations/{integration_id}", headers=tenant.key_headers)
        assert got.json()["status"] == "active"
        assert fake.duplicated_sessions == 0
        assert fake.connections(session) == 1
        new_holder = await other.container.leases.holder(lease_name(integration_id), other.container.clock())
        assert new_holder == other.container.worker_id


async def test_deleting_an_account_run_by_another_process_logs_it_out_once(
    settings_factory: Callable[..., Settings],
) -> None:
    fake = FakeTelegram()
    phone = new_phone()
    fake.add_account(phone)
    settings = account_settings(settings_factory)
    async with account_api(settings, fake) as first, account_api(settings, fake) as second:
        tenant = await first.tenant()
        account = await login(first, tenant, fake, phone)
        owner, other = await _owner(first, second, account["id"])
        integration = await other.container.integrations.get(tenant.id, account["id"])
        session = (await other.container.integrations.credentials(integration))[SESSION]
        clock = Stopwatch()
        deleted = await other.client.delete(f"/v1/integrations/{account['id']}", headers=tenant.key_headers)
        assert deleted.status_code == 204, deleted.text
        # The owner let go first (its heartbeat saw the account disabled), then one logout.
        assert clock.seconds < LEASE_SECONDS * 1.5 + 1
        assert live_client(owner, account["id"]) is None
        assert fake.duplicated_sessions == 0
        assert fake.connections(session) == 0
        probe = FakeAccountClient(fake, session)
        await probe.connect()
        assert not await probe.is_authorized()
        await probe.disconnect()
