"""The integrations registry: sealed credentials, masking, status machine, key rotation."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import MetaData, select

from chatgate.domain.errors import CryptoError, InvalidInput
from chatgate.domain.integrations import IntegrationStatus
from tests.conftest import Api

BOT_TOKEN = "7000000001:TESTFakeTokenForTestsOnly_abcdefghijklm"
APP_SECRET = "app-secret-for-tests-0123456789abcdef"


async def dump_database(api: Api) -> str:
    """Every row of every table as text: what a `pg_dump`/`mysqldump` would contain."""
    metadata = MetaData()
    async with api.container.db.engine.connect() as conn:
        await conn.run_sync(metadata.reflect)
        chunks: list[str] = []
        for table in metadata.sorted_tables:
            chunks.extend(repr(tuple(row)) for row in (await conn.execute(select(table))).all())
    return "\n".join(chunks)


async def create(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    # The generic registry path (no provider connect flow): telegram_bot, whatsapp_cloud and
    # twilio connect through their providers (tested in test_telegram_bots / test_whatsapp_pipeline).
    payload = {"kind": "webhook", "name": "support site", "credentials": {"bot_token": BOT_TOKEN}} | body
    response = await api.client.post("/v1/integrations", json=payload, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_credentials_are_masked_and_sealed(api: Api) -> None:
    tenant = await api.tenant()
    created = await create(api, tenant.key_headers, config={"mode": "webhook"})
    assert created["credentials"] == {"bot_token": "••••jklm"}
    assert created["status"] == "pending"
    assert created["inbound_path"] == f"/in/webhook/{created['public_id']}"
    assert created["counters"] == {"messages_received": 0, "messages_sent": 0, "last_activity_at": None}
    fetched = await api.client.get(f"/v1/integrations/{created['id']}", headers=tenant.key_headers)
    assert BOT_TOKEN not in fetched.text
    assert BOT_TOKEN not in await dump_database(api)
    integration = await api.container.integrations.get(tenant.id, created["id"])
    assert await api.container.integrations.credentials(integration) == {"bot_token": BOT_TOKEN}


async def test_sealed_credentials_do_not_open_in_another_row(api: Api) -> None:
    tenant = await api.tenant()
    first = await create(api, tenant.key_headers, kind="webhook", credentials={"secret": APP_SECRET})
    second = await create(
        api, tenant.key_headers, kind="webhook", credentials={"secret": "other-secret-value"}
    )
    service = api.container.integrations
    row_one = await service.get(tenant.id, first["id"])
    row_two = await service.get(tenant.id, second["id"])
    row_two.credentials_sealed = row_one.credentials_sealed  # an attacker with DB write access copies it
    with pytest.raises(CryptoError, match="sealed for another row"):
        await service.credentials(row_two)


async def test_update_rename_replace_credentials_disable_enable(api: Api) -> None:
    tenant = await api.tenant()
    created = await create(api, tenant.key_headers)
    url = f"/v1/integrations/{created['id']}"
    renamed = await api.client.patch(url, json={"name": "renamed"}, headers=tenant.key_headers)
    assert renamed.json()["name"] == "renamed"
    new_token = "7000000002:TESTAnotherFakeTokenForTests_zyxwvutsrqpo"
    replaced = await api.client.patch(
        url, json={"credentials": {"bot_token": new_token}}, headers=tenant.key_headers
    )
    assert replaced.json()["credentials"] == {"bot_token": "••••rqpo"}
    row = await api.container.integrations.get(tenant.id, created["id"])
    assert await api.container.integrations.credentials(row) == {"bot_token": new_token}
    disabled = await api.client.patch(url, json={"enabled": False}, headers=tenant.key_headers)
    assert disabled.json()["status"] == "disabled"
    assert disabled.json()["status_reason"] == "disabled by a user"
    enabled = await api.client.patch(url, json={"enabled": True}, headers=tenant.key_headers)
    assert enabled.json()["status"] == "pending"


async def test_status_machine_refuses_impossible_moves(api: Api) -> None:
    tenant = await api.tenant()
    created = await create(api, tenant.key_headers)
    service = api.container.integrations
    await service.set_status(tenant.id, created["id"], IntegrationStatus.ACTIVE, None)
    errored = await service.set_status(
        tenant.id, created["id"], IntegrationStatus.NEEDS_REAUTH, "401 Unauthorized"
    )
    assert errored.last_error == "401 Unauthorized"
    with pytest.raises(InvalidInput, match="from 'needs_reauth' to 'active'"):
        await service.set_status(tenant.id, created["id"], IntegrationStatus.ACTIVE, None)


async def test_list_filters_and_paginates(api: Api) -> None:
    tenant = await api.tenant()
    ids = [
        (await create(api, tenant.key_headers, kind="webhook", name=f"hook {i}", credentials={}))["id"]
        for i in range(5)
    ]
    await create(api, tenant.key_headers, kind="google_calendar", name="calendar", credentials={})
    seen: list[str] = []
    cursor = None
    while True:
        params = {"kind": "webhook", "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.client.get("/v1/integrations", params=params, headers=tenant.key_headers)).json()
        seen += [item["id"] for item in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


async def test_delete_removes_the_integration(api: Api) -> None:
    tenant = await api.tenant()
    created = await create(api, tenant.key_headers)
    url = f"/v1/integrations/{created['id']}"
    assert (await api.client.delete(url, headers=tenant.key_headers)).status_code == 204
    gone = await api.client.get(url, headers=tenant.key_headers)
    assert gone.status_code == 404
    assert gone.json()["detail"] == f"integration '{created['id']}' does not exist"


async def test_key_rotation_reencrypts_everything_and_all_still_works(api: Api) -> None:
    tenant = await api.tenant()
    tokens = [f"70000000{i:02d}:AARotationTestToken_{i:02d}_abcdefghijklmn" for i in range(7)]
    created = [await create(api, tenant.key_headers, credentials={"bot_token": t}) for t in tokens]
    rotation = api.container.key_rotation
    before = await rotation.status()
    report = await rotation.rotate()
    after = await rotation.status()
    assert report.resealed >= len(tokens)
    assert set(after["integrations.credentials_sealed"]) == {report.new_version}
    assert report.new_version not in before["integrations.credentials_sealed"]
    dump = await dump_database(api)
    assert all(t not in dump for t in tokens)
    for item, token in zip(created, tokens, strict=True):
        row = await api.container.integrations.get(tenant.id, item["id"])
        assert api.container.box.key_version(row.credentials_sealed or "") == report.new_version
        assert await api.container.integrations.credentials(row) == {"bot_token": token}
    again = await rotation.reseal_all()
    assert again.resealed == 0
