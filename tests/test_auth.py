"""Users, JWTs, API keys: login, refresh, revocation, roles and scopes — on every database."""

from __future__ import annotations

from sqlalchemy import text

from chatgate.domain.access import Role
from tests.conftest import Api


async def test_login_refresh_and_single_use_refresh(api: Api) -> None:
    tenant = await api.tenant()
    tokens = await tenant.login()
    me = await api.client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json()["role"] == "owner"
    assert me.json()["tenant_id"] == tenant.id

    refreshed = await api.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert refreshed.json()["access_token"] != tokens["access_token"]
    replay = await api.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]


async def test_wrong_password_and_unknown_user_look_the_same(api: Api) -> None:
    tenant = await api.tenant()
    wrong = await api.client.post(
        "/v1/auth/login", json={"email": tenant.owner_email, "password": "not the password"}
    )
    unknown = await api.client.post(
        "/v1/auth/login", json={"email": "nobody@nowhere.example", "password": "whatever it is"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"] == "wrong e-mail or password"


async def test_access_token_is_not_a_refresh_token(api: Api) -> None:
    tenant = await api.tenant()
    tokens = await tenant.login()
    response = await api.client.post("/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
    assert response.status_code == 401
    assert "not a refresh token" in response.json()["detail"]


async def test_revoked_api_key_stops_working_at_once(api: Api) -> None:
    tenant = await api.tenant()
    created = await api.client.post(
        "/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=tenant.key_headers
    )
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith(key["prefix"])
    headers = {"X-API-Key": key["key"]}
    assert (await api.client.get("/v1/integrations", headers=headers)).status_code == 200
    revoked = await api.client.delete(f"/v1/api-keys/{key['id']}", headers=tenant.key_headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    after = await api.client.get("/v1/integrations", headers=headers)
    assert after.status_code == 401
    assert after.json()["detail"] == "the API key has been revoked"


async def test_api_key_is_shown_once_and_stored_hashed(api: Api) -> None:
    tenant = await api.tenant()
    created = (
        await api.client.post(
            "/v1/api-keys", json={"name": "x", "scopes": ["send"]}, headers=tenant.key_headers
        )
    ).json()
    fetched = (await api.client.get(f"/v1/api-keys/{created['id']}", headers=tenant.key_headers)).json()
    assert "key" not in fetched
    listed = (await api.client.get("/v1/api-keys", headers=tenant.key_headers)).json()
    assert created["key"] not in str(listed)
    secret_part = created["key"][len(created["prefix"]) :]
    assert len(secret_part) == 32

    async with api.container.db.sessions() as session:
        rows = (await session.execute(text("SELECT secret_hash, lookup FROM api_keys"))).all()
    assert all(secret_part not in str(row) for row in rows)


async def test_bearer_api_key_and_malformed_keys(api: Api) -> None:
    tenant = await api.tenant()
    ok = await api.client.get("/v1/me", headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert ok.status_code == 200
    assert ok.json()["actor_type"] == "api_key"
    bad = await api.client.get("/v1/me", headers={"X-API-Key": "cgk_short"})
    assert bad.status_code == 401
    assert bad.json()["detail"] == "the API key is malformed"
    tampered = tenant.api_key[:-1] + ("A" if tenant.api_key[-1] != "A" else "B")
    wrong = await api.client.get("/v1/me", headers={"X-API-Key": tampered})
    assert wrong.status_code == 401
    none = await api.client.get("/v1/me")
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer"


async def test_scopes_limit_what_a_key_can_do(api: Api) -> None:
    tenant = await api.tenant()
    read_key = (
        await api.client.post(
            "/v1/api-keys", json={"name": "r", "scopes": ["read"]}, headers=tenant.key_headers
        )
    ).json()["key"]
    headers = {"X-API-Key": read_key}
    assert (await api.client.get("/v1/integrations", headers=headers)).status_code == 200
    denied = await api.client.post("/v1/integrations", json={"kind": "webhook", "name": "w"}, headers=headers)
    assert denied.status_code == 403
    assert "'manage' permission" in denied.json()["detail"]
    # Keys never manage people, whatever their scopes.
    assert (await api.client.get("/v1/users", headers=tenant.key_headers)).status_code == 403


async def test_roles_limit_what_a_user_can_do(api: Api) -> None:
    tenant = await api.tenant()
    viewer = await tenant.user_headers(Role.VIEWER)
    agent = await tenant.user_headers(Role.AGENT)
    admin = await tenant.user_headers(Role.ADMIN)
    assert (await api.client.get("/v1/integrations", headers=viewer)).status_code == 200
    assert (
        await api.client.post("/v1/api-keys", json={"name": "k", "scopes": ["read"]}, headers=agent)
    ).status_code == 403
    assert (await api.client.get("/v1/audit-log", headers=agent)).status_code == 403
    assert (await api.client.get("/v1/audit-log", headers=admin)).status_code == 200
    # An admin may not create an owner.
    escalate = await api.client.post(
        "/v1/users",
        json={"email": "boss@x.example", "password": "a long enough password", "role": "owner"},
        headers=admin,
    )
    assert escalate.status_code == 403


async def test_last_owner_cannot_be_removed_and_demotion_is_immediate(api: Api) -> None:
    tenant = await api.tenant()
    owner = await tenant.owner_headers()
    me = (await api.client.get("/v1/me", headers=owner)).json()
    demote = await api.client.patch(f"/v1/users/{me['actor_id']}", json={"role": "viewer"}, headers=owner)
    assert demote.status_code == 409
    assert "at least one active owner" in demote.json()["detail"]

    admin_headers = await tenant.user_headers(Role.ADMIN)
    admin_id = (await api.client.get("/v1/me", headers=admin_headers)).json()["actor_id"]
    assert (await api.client.get("/v1/users", headers=admin_headers)).status_code == 200
    demoted = await api.client.patch(f"/v1/users/{admin_id}", json={"role": "viewer"}, headers=owner)
    assert demoted.status_code == 200
    # The admin's still-valid token carries the old role, but the current role is what counts.
    assert (await api.client.get("/v1/users", headers=admin_headers)).status_code == 403


async def test_deactivated_user_is_locked_out(api: Api) -> None:
    tenant = await api.tenant()
    owner = await tenant.owner_headers()
    agent_headers = await tenant.user_headers(Role.AGENT)
    agent_id = (await api.client.get("/v1/me", headers=agent_headers)).json()["actor_id"]
    assert (
        await api.client.patch(f"/v1/users/{agent_id}", json={"is_active": False}, headers=owner)
    ).status_code == 200
    response = await api.client.get("/v1/me", headers=agent_headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "this user is deactivated"


async def test_login_needs_tenant_when_email_is_in_two_tenants(api: Api) -> None:
    first = await api.tenant()
    second = await api.tenant()
    shared = f"shared-{first.slug}@example.com"
    for tenant in (first, second):
        response = await api.client.post(
            "/v1/users",
            json={"email": shared, "password": "a long enough password", "role": "viewer"},
            headers=await tenant.owner_headers(),
        )
        assert response.status_code == 201
    ambiguous = await api.client.post(
        "/v1/auth/login", json={"email": shared, "password": "a long enough password"}
    )
    assert ambiguous.status_code == 422
    assert "several tenants" in ambiguous.json()["detail"]
    chosen = await api.client.post(
        "/v1/auth/login", json={"email": shared, "password": "a long enough password", "tenant": second.slug}
    )
    assert chosen.status_code == 200
    assert chosen.json()["tenant_id"] == second.id
