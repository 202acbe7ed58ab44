"""Every route in the OpenAPI document is protected, and another tenant's object is a 404.

The route list comes from the live OpenAPI document, so a route added later is checked
automatically; a new path parameter needs a factory in OBJECT_FACTORIES or this test fails.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import Api, TenantHandle

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
}

# Bodies for mutating routes, valid enough to get past validation to the object lookup.
BODIES: dict[tuple[str, str], Any] = {}


async def _integration(api: Api, tenant: TenantHandle) -> str:
    response = await api.client.post(
        "/v1/integrations",
        json={"kind": "webhook", "name": "victim", "credentials": {"secret": "s3cret-value-123"}},
        headers=tenant.key_headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _user(api: Api, tenant: TenantHandle) -> str:
    response = await api.client.post(
        "/v1/users",
        json={
            "email": f"victim@{tenant.slug}.example",
            "password": "a long enough password",
            "role": "viewer",
        },
        headers=await tenant.owner_headers(),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _api_key(api: Api, tenant: TenantHandle) -> str:
    response = await api.client.post(
        "/v1/api-keys", json={"name": "victim", "scopes": ["read"]}, headers=tenant.key_headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


OBJECT_FACTORIES: dict[str, Callable[[Api, TenantHandle], Awaitable[str]]] = {
    "integration_id": _integration,
    "user_id": _user,
    "api_key_id": _api_key,
}


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


async def test_every_non_public_route_needs_credentials(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    checked = 0
    for method, path in operations(spec):
        if (method, path) in PUBLIC:
            continue
        concrete = re.sub(r"\{[^}]+\}", "whatever", path)
        response = await api.client.request(method, concrete, json=BODIES.get((method, path), {}))
        assert response.status_code == 401, (
            f"{method} {path} answered {response.status_code} without credentials"
        )
        assert response.headers["content-type"] == "application/problem+json"
        checked += 1
    assert checked >= 15


async def test_another_tenants_objects_are_404_on_every_route(api: Api) -> None:
    victim = await api.tenant()
    intruder = await api.tenant()
    intruder_owner = await intruder.owner_headers()
    objects = {name: await factory(api, victim) for name, factory in OBJECT_FACTORIES.items()}
    spec = (await api.client.get("/openapi.json")).json()
    checked = 0
    for method, path in operations(spec):
        params = re.findall(r"\{([^}]+)\}", path)
        if not params:
            continue
        unknown = [p for p in params if p not in objects]
        if unknown:
            pytest.fail(f"{method} {path}: add a factory for {unknown} to OBJECT_FACTORIES")
        concrete = path
        for name in params:
            concrete = concrete.replace("{" + name + "}", objects[name])
        response = await api.client.request(
            method, concrete, json=BODIES.get((method, path), {}), headers=intruder_owner
        )
        assert response.status_code == 404, f"{method} {path} answered {response.status_code} across tenants"
        assert victim.id not in response.text
        checked += 1
    assert checked >= 8
    # And the victim still has every object, untouched.
    for name, object_id in objects.items():
        path = {
            "integration_id": "/v1/integrations/",
            "user_id": "/v1/users/",
            "api_key_id": "/v1/api-keys/",
        }[name]
        owner = await victim.owner_headers()
        still = await api.client.get(path + object_id, headers=owner)
        assert still.status_code == 200, f"{name} was changed by another tenant"
        if name == "api_key_id":
            assert still.json()["revoked_at"] is None


async def test_lists_never_show_another_tenants_rows(api: Api) -> None:
    victim = await api.tenant()
    intruder = await api.tenant()
    await _integration(api, victim)
    await _api_key(api, victim)
    owner = await intruder.owner_headers()
    for path in ("/v1/integrations", "/v1/api-keys", "/v1/users", "/v1/audit-log"):
        response = await api.client.get(path, headers=owner)
        assert response.status_code == 200, path
        assert victim.id not in response.text
        assert "victim" not in response.text, path
