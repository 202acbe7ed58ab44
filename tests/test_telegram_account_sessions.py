"""Telegram account sessions end to end: sealed at rest, alive again after a restart without a
new login (and catching up on what arrived meanwhile), a revoked session turning the integration
`needs_reauth`, and deleting the integration logging the session out at Telegram (the fake)."""

from __future__ import annotations

from collections.abc import Callable

from chatgate.config import Settings
from chatgate.providers.telegram_user.fake import FakeAccountClient, FakeTelegram
from chatgate.services.telegram_accounts import CODE_HASH, SESSION
from tests.account_helpers import (
    account_api,
    account_settings,
    dump_database,
    events,
    login,
    login_states,
    new_phone,
    received_texts,
    start_code,
    step,
    until,
    wait_live,
)
from tests.conftest import Api
from tests.webhook_helpers import eventually


async def _session_of(api: Api, tenant_id: str, integration_id: str) -> dict[str, str]:
    integration = await api.container.integrations.get(tenant_id, integration_id)
    return await api.container.integrations.credentials(integration)


async def _authorized(fake: FakeTelegram, session: str) -> bool:
    probe = FakeAccountClient(fake, session)
    await probe.connect()
    try:
        return await probe.is_authorized()
    finally:
        await probe.disconnect()


async def test_sessions_are_sealed_and_survive_a_restart(settings_factory: Callable[..., Settings]) -> None:
    fake = FakeTelegram()
    phone = new_phone()
    fake.add_account(phone, "Sealed")
    peer = fake.add_user("Peer", username="peer_" + phone[-6:])
    settings = account_settings(settings_factory)

    async with account_api(settings, fake) as api:
        tenant = await api.tenant()
        started = await start_code(api, tenant, phone)
        pending = await _session_of(api, tenant.id, started["id"])
        dump = await dump_database(api)
        assert pending[SESSION] not in dump  # the half-logged-in session (it can finish the login)
        assert pending[CODE_HASH] not in dump
        account = await login(api, tenant, fake, phone)  # a second login of the same number
        assert account["id"] != started["id"]
        credentials = await _session_of(api, tenant.id, account["id"])
        session = credentials[SESSION]
        assert session.startswith("1")  # a Telethon StringSession
        assert session not in await dump_database(api)
        assert (
            session
            not in (
                await api.client.get(f"/v1/integrations/{account['id']}", headers=tenant.key_headers)
            ).text
        )
        await wait_live(api, account["id"])
        await fake.deliver_message(phone, peer, "before the restart")
        await eventually(lambda: received_texts(api, tenant, account["id"]))
        codes_sent = len(fake._codes)

    # Nobody runs the account now; Telegram keeps what arrives for the session.
    await fake.deliver_message(phone, peer, "while chatgate was down")

    async with account_api(settings, fake) as api:
        await wait_live(api, account["id"])
        await fake.deliver_message(phone, peer, "after the restart")

        async def all_three() -> list[str]:
            texts = await received_texts(api, tenant, account["id"])
            return texts if len(texts) >= 3 else []

        texts = await eventually(all_three)
        assert texts == ["before the restart", "while chatgate was down", "after the restart"]
        assert len(fake._codes) == codes_sent  # no new login code: the stored session was used
        got = await api.client.get(f"/v1/integrations/{account['id']}", headers=tenant.key_headers)
        assert got.json()["status"] == "active"
        assert fake.duplicated_sessions == 0


async def test_a_revoked_session_needs_reauth(settings_factory: Callable[..., Settings]) -> None:
    fake = FakeTelegram()
    phone = new_phone()
    fake.add_account(phone)
    async with account_api(account_settings(settings_factory), fake) as api:
        tenant = await api.tenant()
        account = await login(api, tenant, fake, phone)
        await wait_live(api, account["id"])
        session = (await _session_of(api, tenant.id, account["id"]))[SESSION]
        assert fake.revoke_session(session) == 1  # the owner ended it under Settings → Devices

        async def reauth() -> list[dict[str, object]]:
            found = await events(api, tenant, "integration.status_changed", account["id"])
            return [e for e in found if e["data"]["status"] == "needs_reauth"]

        changed = (await eventually(reauth, timeout=10))[0]["data"]
        assert changed["previous_status"] == "active"
        assert "terminated by the account owner" in str(changed["reason"])
        got = (await api.client.get(f"/v1/integrations/{account['id']}", headers=tenant.key_headers)).json()
        assert got["status"] == "needs_reauth"
        await until(lambda: api.container.live_accounts.get(account["id"]) is None)

        # Reconnecting cannot revive it: a clear answer that a new login is needed.
        again = await api.client.post(
            f"/api/integrations/telegram/accounts/{account['id']}/reconnect", headers=tenant.key_headers
        )
        assert again.status_code == 409
        assert "log in again" in again.json()["detail"]

        assert f"/v1/telegram/accounts/{account['id']}/relogin" in again.json()["detail"]

        # A new login of the same account as another integration is refused, pointing here.
        second = await start_code(api, tenant, phone)
        refused = await api.client.post(
            f"/v1/telegram/accounts/{second['id']}/code",
            json={"code": fake.last_code(phone)},
            headers=tenant.key_headers,
        )
        assert refused.status_code == 409
        assert f"integration {account['id']}, needs_reauth" in refused.json()["detail"]

        # Logging the same integration in again: a new session, the same integration.
        restarted = await step(api, tenant, account["id"], "relogin")
        assert restarted["status"] == "pending"
        assert restarted["login"]["state"] == "code_sent"
        relogged = await step(api, tenant, account["id"], "code", code=fake.last_code(phone))
        assert relogged["status"] == "active"
        new_session = (await _session_of(api, tenant.id, account["id"]))[SESSION]
        assert new_session != session
        await wait_live(api, account["id"])
        status = await api.client.get("/telegram/status", headers=tenant.key_headers)
        by_id = {a["integration_id"]: a["status"] for a in status.json()["accounts"]}
        assert by_id[account["id"]] == "active"
        states = [e["state"] for e in await login_states(api, tenant, account["id"])]
        assert states == ["code_sent", "active", "code_sent", "active"]
        active_again = await api.client.post(
            f"/v1/telegram/accounts/{account['id']}/relogin", headers=tenant.key_headers
        )
        assert active_again.status_code == 409


async def test_deleting_the_account_logs_the_session_out(settings_factory: Callable[..., Settings]) -> None:
    fake = FakeTelegram()
    async with account_api(account_settings(settings_factory), fake) as api:
        tenant = await api.tenant()
        for path in ("/v1/integrations/{id}", "/api/integrations/telegram/accounts/{id}"):
            phone = new_phone()
            fake.add_account(phone)
            account = await login(api, tenant, fake, phone)
            await wait_live(api, account["id"])
            session = (await _session_of(api, tenant.id, account["id"]))[SESSION]
            deleted = await api.client.delete(path.format(id=account["id"]), headers=tenant.key_headers)
            assert deleted.status_code == 204, deleted.text
            assert not await _authorized(fake, session), path
            gone = await api.client.get(f"/v1/telegram/accounts/{account['id']}", headers=tenant.key_headers)
            assert gone.status_code == 404
            gone_id = str(account["id"])
            await until(lambda: api.container.live_accounts.get(gone_id) is None)  # noqa: B023

        # An account that never finished logging in is deleted without a live client.
        phone = new_phone()
        fake.add_account(phone, password="pw")
        started = await start_code(api, tenant, phone)
        session = (await _session_of(api, tenant.id, started["id"]))[SESSION]
        deleted = await api.client.delete(f"/v1/integrations/{started['id']}", headers=tenant.key_headers)
        assert deleted.status_code == 204
        assert not await _authorized(fake, session)
