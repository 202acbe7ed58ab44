"""The accounts sandbox over HTTP: the remote client gets the same typed errors and results as
the in-process fake client (the login flow and the error mapping, across a process boundary)."""

from __future__ import annotations

import pytest

from chatgate.domain.errors import InvalidInput, PermissionDenied, RateLimited
from chatgate.providers.telegram_user.errors import PasswordNeeded
from chatgate.providers.telegram_user.remote import RemoteAccountClient
from chatgate.sandbox.telegram_accounts import SandboxTelegramAccounts
from chatgate.services.account_clients import AccountSpec
from tests.asgi_server import serve_asgi


async def test_login_and_errors_cross_the_process_boundary_typed() -> None:
    sandbox = SandboxTelegramAccounts()
    sandbox.fake.add_account("+15550001111", username="ada", password="hunter2", password_hint="pet")
    sandbox.fake.add_account("+15550002222")
    sandbox.fake.ban("+15550002222")
    async with serve_asgi(sandbox.app) as url:
        client = RemoteAccountClient(url, AccountSpec(session=None))
        await client.connect()
        try:
            with pytest.raises(InvalidInput, match="phone number"):
                await client.send_code("+1")
            with pytest.raises(PermissionDenied, match="banned"):
                await client.send_code("+15550002222")
            sandbox.fake.set_flood_wait(42)
            with pytest.raises(RateLimited) as flood:
                await client.send_code("+15550001111")
            assert flood.value.retry_after == 42
            sent = await client.send_code("+15550001111")
            with pytest.raises(PasswordNeeded) as needed:
                await client.sign_in_code(
                    "+15550001111", sandbox.fake.last_code("+15550001111"), sent.phone_code_hash
                )
            assert needed.value.hint == "pet"
            with pytest.raises(InvalidInput, match="password"):
                await client.sign_in_password("wrong")
            me = await client.sign_in_password("hunter2")
            assert me.username == "ada"
            assert await client.is_authorized()
            session = client.session_string()
            assert session
        finally:
            await client.disconnect()
        # The session string works from another client (another process, in production).
        again = RemoteAccountClient(url, AccountSpec(session=session))
        await again.connect()
        try:
            assert (await again.get_me()).username == "ada"
        finally:
            await again.disconnect()
