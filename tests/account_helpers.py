"""Helpers for the Telegram user-account end-to-end tests: chatgate on an in-process
`FakeTelegram` (the Container's `account_clients=` factory), logins through the HTTP API, and the
event log read back through `/v1/events`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import MetaData, select

from chatgate.bootstrap import Container
from chatgate.config import Settings
from chatgate.providers.telegram_user.fake import FakeAccountClient, FakeTelegram
from chatgate.services.account_clients import AccountClientFactory, AccountSpec
from tests.conftest import Api, TenantHandle, running_api, unique
from tests.webhook_helpers import eventually

API_HASH = "0123456789abcdef0123456789abcdef"
ACCOUNT_SETTINGS: dict[str, Any] = {
    "telegram_api_id": 12345,
    "telegram_api_hash": API_HASH,
    "telegram_account_lease_seconds": 3,
    "telegram_account_scan_interval_seconds": 0.2,
    "telegram_qr_login_minutes": 1,
}

_phones = iter(range(1_000_000, 9_999_999))


def new_phone() -> str:
    """A phone number no other test uses (the fake's user ids are process-wide)."""
    return f"+1555{next(_phones):07d}"


def fake_clients(fake: FakeTelegram) -> AccountClientFactory:
    """The Container's `account_clients=`: every client talks to `fake` (and resumes the update
    sequence from the state the runtime stored, like Telethon does from its session)."""

    def make(spec: AccountSpec) -> FakeAccountClient:
        return FakeAccountClient(fake, spec.session, update_state=spec.update_state)

    return make


def account_settings(settings_factory: Callable[..., Settings], **overrides: Any) -> Settings:
    return settings_factory(**{**ACCOUNT_SETTINGS, **overrides})


@asynccontextmanager
async def account_api(settings: Settings, fake: FakeTelegram, **container_kwargs: Any) -> AsyncIterator[Api]:
    """chatgate (API + in-process workers) whose Telegram accounts talk to `fake`."""
    async with running_api(settings, account_clients=fake_clients(fake), **container_kwargs) as api:
        yield api


async def events(
    api: Api, tenant: TenantHandle, types: str, integration_id: str | None = None
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"types": types, "limit": 500}
    if integration_id:
        params["integration_id"] = integration_id
    response = await api.client.get("/v1/events", params=params, headers=tenant.key_headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def login_states(api: Api, tenant: TenantHandle, integration_id: str) -> list[dict[str, Any]]:
    """The `account.login` events' data of one integration, oldest first."""
    return [e["data"] for e in await events(api, tenant, "account.login", integration_id)]


async def start_code(api: Api, tenant: TenantHandle, phone: str, **body: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/telegram/accounts", json={"phone": phone, **body}, headers=tenant.key_headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def step(api: Api, tenant: TenantHandle, integration_id: str, name: str, **body: Any) -> dict[str, Any]:
    response = await api.client.post(
        f"/v1/telegram/accounts/{integration_id}/{name}", json=body or None, headers=tenant.key_headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def login(
    api: Api, tenant: TenantHandle, fake: FakeTelegram, phone: str, *, password: str | None = None
) -> dict[str, Any]:
    """phone → code (→ password) through the HTTP API; the account's integration, active."""
    started = await start_code(api, tenant, phone, name=unique("acct "))
    account = await step(api, tenant, started["id"], "code", code=fake.last_code(phone))
    if password is not None:
        assert account["login"]["state"] == "password_needed", account
        account = await step(api, tenant, started["id"], "password", password=password)
    assert account["status"] == "active", account
    return account


async def until(check: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    """`eventually` for plain functions as well as coroutines."""
    return await eventually(cast(Callable[[], Awaitable[Any]], check), timeout=timeout)


async def dump_database(api: Api) -> str:
    """Every row of every table as text: what a database dump would contain."""
    metadata = MetaData()
    async with api.container.db.engine.connect() as conn:
        await conn.run_sync(metadata.reflect)
        chunks: list[str] = []
        for table in metadata.sorted_tables:
            chunks.extend(repr(tuple(row)) for row in (await conn.execute(select(table))).all())
    return "\n".join(chunks)


def live_client(api: Api, integration_id: str) -> Any:
    return api.container.live_accounts.get(integration_id)


async def wait_live(api: Api, integration_id: str, *, timeout: float = 15.0) -> Any:
    """Until this process runs the account (its worker took the lease and connected)."""
    return await until(lambda: live_client(api, integration_id), timeout=timeout)


async def wait_synced(api: Api, tenant: TenantHandle, integration_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await api.client.get(
            f"/v1/telegram/accounts/{integration_id}/dialogs", headers=tenant.key_headers
        )
        body: dict[str, Any] = response.json()
        return body if body["synced_at"] else None

    found: dict[str, Any] = await eventually(check, timeout=15)
    return found


async def received_texts(api: Api, tenant: TenantHandle, integration_id: str) -> list[str]:
    return [e["data"]["text"] for e in await events(api, tenant, "message.received", integration_id)]


async def message_status(
    api: Api, tenant: TenantHandle, message_id: str, wanted: tuple[str, ...] = ("sent", "failed")
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await api.client.get(f"/v1/messages/{message_id}", headers=tenant.key_headers)
        body: dict[str, Any] = response.json()
        return body if body["status"] in wanted else None

    found: dict[str, Any] = await eventually(check, timeout=20)
    return found


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def container_of(api: Api) -> Container:
    return api.container
