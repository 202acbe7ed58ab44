"""Key rotation end to end: Vault-backed containers, and operator-rotated settings keys."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

import pytest

from chatgate.config import Settings
from chatgate.domain.errors import ConfigurationError, CryptoError
from tests.conftest import start_api
from tests.test_integrations import create, dump_database
from tests.test_keyring import VAULT_TOKEN, RunningVault, fake_vault

__all__ = ["fake_vault"]  # the fixture is used by name

TOKEN = "7000000777:TESTKeyRotationEndToEndToken_abcdefghijkl"


def key(version: int) -> str:
    return f"{version}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


async def test_vault_backend_seals_rotates_and_reopens(
    fake_vault: RunningVault, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(
        keyring_backend="vault",
        vault_url=fake_vault.url,
        vault_token=VAULT_TOKEN,
        vault_transit_key=f"chatgate-e2e-{secrets.token_hex(4)}",
    )
    async for api in start_api(settings, "sqlite"):
        ready = await api.client.get("/health/ready")
        assert ready.json()["checks"]["keyring"] == "ok"
        tenant = await api.tenant()
        created = await create(api, tenant.key_headers, credentials={"bot_token": TOKEN})
        row = await api.container.integrations.get(tenant.id, created["id"])
        assert (row.credentials_sealed or "").startswith("cg1.vault:v1:")
        report = await api.container.key_rotation.rotate()
        assert report.new_version == "v2"
        assert report.resealed == 1
        row = await api.container.integrations.get(tenant.id, created["id"])
        assert (row.credentials_sealed or "").startswith("cg1.vault:v2:")
        assert TOKEN not in await dump_database(api)
        assert await api.container.integrations.credentials(row) == {"bot_token": TOKEN}


async def test_settings_keys_rotate_by_operator_then_reseal(
    settings_factory: Callable[..., Settings],
) -> None:
    first, second = key(1), key(2)
    async for api in start_api(settings_factory(keyring_keys=first), "sqlite"):
        tenant = await api.tenant()
        created = await create(api, tenant.key_headers, credentials={"bot_token": TOKEN})
        with pytest.raises(ConfigurationError, match="add a new, higher version"):
            await api.container.key_rotation.rotate()
    # The operator adds version 2 and restarts: new secrets use v2, old ones still open.
    async for api in start_api(settings_factory(keyring_keys=f"{first},{second}"), "sqlite"):
        report = await api.container.key_rotation.reseal_all()
        assert report.new_version == "v2"
        assert report.resealed >= 1
        assert set((await api.container.key_rotation.status())["integrations.credentials_sealed"]) == {"v2"}
    # Version 1 can now be retired.
    async for api in start_api(settings_factory(keyring_keys=second), "sqlite"):
        row = await api.container.integrations.get(tenant.id, created["id"])
        assert await api.container.integrations.credentials(row) == {"bot_token": TOKEN}
    # And without the key that sealed them, secrets do not open.
    async for api in start_api(settings_factory(keyring_keys=key(3)), "sqlite"):
        row = await api.container.integrations.get(tenant.id, created["id"])
        with pytest.raises(CryptoError, match="v2"):
            await api.container.integrations.credentials(row)
