"""The audit log records every mutating request: who, tenant, action, target, outcome, IP."""

from __future__ import annotations

import re

from chatgate.api.audit import MUTATING, UNAUDITED_PREFIXES
from tests.conftest import Api


async def audit_entries(api: Api, headers: dict[str, str], **params: str) -> list[dict[str, object]]:
    response = await api.client.get("/v1/audit-log", params=params, headers=headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, object]] = response.json()["data"]
    return data


async def test_create_is_audited_with_actor_target_and_ip(api: Api) -> None:
    tenant = await api.tenant()
    created = await api.client.post(
        "/v1/integrations", json={"kind": "webhook", "name": "hook"}, headers=tenant.key_headers
    )
    entries = await audit_entries(api, tenant.key_headers, action="integrations.create")
    assert len(entries) == 1
    entry = entries[0]
    assert entry["actor_type"] == "api_key"
    assert entry["target_type"] == "integration"
    assert entry["target_id"] == created.json()["id"]
    assert entry["outcome"] == "success"
    assert entry["status_code"] == 201
    assert entry["client_ip"] == "127.0.0.1"
    assert entry["request_id"] == created.headers["x-request-id"]
    assert entry["path"] == "/v1/integrations"


async def test_failures_and_denials_are_audited(api: Api) -> None:
    tenant = await api.tenant()
    read_only = (
        await api.client.post(
            "/v1/api-keys", json={"name": "ro", "scopes": ["read"]}, headers=tenant.key_headers
        )
    ).json()
    denied = await api.client.post(
        "/v1/integrations", json={"kind": "webhook", "name": "x"}, headers={"X-API-Key": read_only["key"]}
    )
    assert denied.status_code == 403
    missing = await api.client.delete("/v1/integrations/int_missing", headers=tenant.key_headers)
    assert missing.status_code == 404
    entries = await audit_entries(api, tenant.key_headers)
    outcomes = {(e["action"], e["outcome"], e["actor_id"]) for e in entries}
    assert ("integrations.create", "denied", read_only["id"]) in outcomes
    assert any(e["action"] == "integrations.delete" and e["outcome"] == "failure" for e in entries)


async def test_logins_are_audited_including_failures(api: Api) -> None:
    tenant = await api.tenant()
    await tenant.login()
    bad = await api.client.post(
        "/v1/auth/login", json={"email": tenant.owner_email, "password": "nope nope nope"}
    )
    assert bad.status_code == 401
    entries = await audit_entries(api, tenant.key_headers, action="auth.login")
    assert [e["outcome"] for e in entries] == ["success"]  # the failure has no tenant yet ...
    from sqlalchemy import select

    from chatgate.store.models import AuditEntry

    async with api.container.db.sessions() as session:
        failed = (
            await session.execute(
                select(AuditEntry).where(
                    AuditEntry.action == "auth.login", AuditEntry.actor_id == tenant.owner_email
                )
            )
        ).scalars()
        assert [f.outcome for f in failed] == ["denied"]  # ... but is kept, with the e-mail tried


async def test_every_mutating_route_is_named_and_audited(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    mutating = [
        (method.upper(), path, operation["operationId"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method.upper() in MUTATING and not path.startswith(UNAUDITED_PREFIXES)
    ]
    names = {name for _, _, name in mutating}
    assert all("." in name for name in names), names
    assert {"integrations.create", "integrations.update", "integrations.delete", "api_keys.revoke"} <= names
    tenant = await api.tenant()
    owner = await tenant.owner_headers()
    for method, path, _ in mutating:
        if path.startswith("/v1/auth"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "missing_id", path)
        await api.client.request(method, concrete, json={}, headers=owner)
    recorded = {e["action"] for e in await audit_entries(api, owner, limit="200")}
    missing = {n for n in names if not n.startswith("auth.")} - recorded
    assert not missing, f"not audited: {missing}"
