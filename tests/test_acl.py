"""Every route in the OpenAPI document is protected, and another tenant's object is a 404.

The route list comes from the live OpenAPI document, so a route added later is checked
automatically; a new path parameter needs a factory in OBJECT_FACTORIES or this test fails.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from chatgate.domain.integrations import IntegrationKind
from chatgate.store.repositories.channels import ChannelRepository
from tests.conftest import Api, TenantHandle, unique
from tests.webhook_helpers import eventually, message_payload, post_inbound, webhook_integration

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/in/{kind}/{public_id}"),  # authenticated by the provider's signature (test_pipeline)
    # Seed 000's token-in-URL Telegram webhook: the token and the secret header authenticate it.
    ("POST", "/api/integrations/webhooks/telegram/{bot_token}/"),
    ("GET", "/in/{kind}/{public_id}"),  # WhatsApp's subscription handshake (verify token)
    ("GET", "/api/whatsapp/webhook"),  # seed 003's handshake
    ("POST", "/api/whatsapp/webhook"),  # seed 003's inbound, signed
    ("POST", "/api/integrations/webhooks/whatsapp/"),  # seed 000's Twilio inbound, signed
}

# Bodies for mutating routes, valid enough to get past validation to the object lookup.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/recover"): {"since": "2020-01-01T00:00:00Z"},
    ("PATCH", "/v1/messages/{message_id}"): {"text": "changed"},
    ("POST", "/v1/integrations/{integration_id}/button-answers"): {"callback_id": "cb-1"},
    ("POST", "/api/integrations/telegram/bots/{bot_id}/send"): {"chat_id": 1, "text": "hi"},
    ("POST", "/v1/channels/{channel_id}/messages"): {"text": "hi"},
    ("POST", "/api/integrations/telegram/channels/{channel_id}/send"): {"text": "hi"},
    ("PUT", "/v1/projects/{project_id}"): {"telegram_send_integration_id": None},
    ("POST", "/v1/telegram/accounts/{integration_id}/code"): {"code": "12345"},
    ("POST", "/v1/telegram/accounts/{integration_id}/password"): {"password": "x"},
}


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


async def _sent_message(api: Api, tenant: TenantHandle) -> dict[str, Any]:
    integration = await webhook_integration(api, tenant)
    response = await api.client.post(
        "/v1/messages",
        json={"integration_id": integration["id"], "to": "victim-address", "text": "hello"},
        headers=tenant.key_headers,
    )
    assert response.status_code == 202, response.text
    message: dict[str, Any] = response.json()["message"]
    return message


async def _message(api: Api, tenant: TenantHandle) -> str:
    return str((await _sent_message(api, tenant))["id"])


async def _conversation(api: Api, tenant: TenantHandle) -> str:
    return str((await _sent_message(api, tenant))["conversation_id"])


async def _contact(api: Api, tenant: TenantHandle) -> str:
    return str((await _sent_message(api, tenant))["contact_id"])


async def _raw_event(api: Api, tenant: TenantHandle) -> str:
    integration = await webhook_integration(api, tenant)
    response = await post_inbound(
        api, integration, message_payload("hi", message_id="m-1"), event_id=unique("evt")
    )
    assert response.status_code == 200, response.text
    page = await api.client.get("/v1/raw-events", headers=tenant.key_headers)
    return str(page.json()["data"][0]["id"])


async def _media(api: Api, tenant: TenantHandle) -> str:
    response = await api.client.post(
        "/v1/media", files={"file": ("victim.txt", b"secret bytes", "text/plain")}, headers=tenant.key_headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _endpoint(api: Api, tenant: TenantHandle) -> str:
    response = await api.client.post(
        "/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/victim"}, headers=tenant.key_headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _delivery(api: Api, tenant: TenantHandle) -> str:
    await _endpoint(api, tenant)
    await _raw_event(api, tenant)

    async def first() -> str | None:
        page = (await api.client.get("/v1/webhook-deliveries", headers=tenant.key_headers)).json()
        return str(page["data"][0]["id"]) if page["data"] else None

    found: str = await eventually(first)
    return found


async def _bot(api: Api, tenant: TenantHandle) -> str:
    # A bot row as connect leaves it; connecting through the sandbox is covered in test_telegram_bots.
    integration = await api.container.integrations.create(
        tenant.id,
        kind=IntegrationKind.TELEGRAM_BOT,
        name="victim bot",
        config={"bot_id": unique("b"), "username": "victim_bot", "mode": "auto"},
        credentials={"bot_token": "1:TEST" + "x" * 30, "secret_token": "s" * 32},
    )
    return integration.id


async def _channel(api: Api, tenant: TenantHandle) -> str:
    bot_id = await _bot(api, tenant)
    async with api.container.db.transaction() as session:
        channel, _ = await ChannelRepository(session, tenant.id).upsert(
            bot_id,
            "-100123",
            datetime.now(UTC),
            kind="channel",
            title="victim channel",
            member_status="administrator",
            can_post=True,
            connected=True,
        )
    return channel.id


async def _project(api: Api, tenant: TenantHandle) -> str:
    project = await api.container.projects.bind(tenant.id, unique("org"))
    return project.project_id


OBJECT_FACTORIES: dict[str, Callable[[Api, TenantHandle], Awaitable[str]]] = {
    "integration_id": _integration,
    "user_id": _user,
    "api_key_id": _api_key,
    "message_id": _message,
    "conversation_id": _conversation,
    "contact_id": _contact,
    "raw_event_id": _raw_event,
    "media_id": _media,
    "endpoint_id": _endpoint,
    "delivery_id": _delivery,
    "bot_id": _bot,
    "channel_id": _channel,
    "project_id": _project,
}


OBJECT_PATHS = {
    "integration_id": "/v1/integrations/",
    "user_id": "/v1/users/",
    "api_key_id": "/v1/api-keys/",
    "message_id": "/v1/messages/",
    "conversation_id": "/v1/conversations/",
    "contact_id": "/v1/contacts/",
    "raw_event_id": "/v1/raw-events/",
    "media_id": "/v1/media/",
    "endpoint_id": "/v1/webhook-endpoints/",
    "delivery_id": "/v1/webhook-deliveries/",
    "bot_id": "/api/integrations/telegram/bots/",
    "channel_id": "/v1/channels/",
    "project_id": "/v1/projects/",
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
        if not params or (method, path) in PUBLIC:
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
        path = OBJECT_PATHS[name]
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
