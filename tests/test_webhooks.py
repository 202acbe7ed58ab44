"""Tenant webhooks: Standard Webhooks signing, durable retries, ordering, rotation, recovery."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from chatgate.config import Settings
from chatgate.delivery import signing
from tests.conftest import Api, TenantHandle, running_api
from tests.test_invariants import MovableClock
from tests.webhook_helpers import (
    Receiver,
    eventually,
    message_payload,
    post_inbound,
    start_receiver,
    webhook_integration,
)


@pytest.fixture
async def site() -> AsyncIterator[Receiver]:
    receiver, runner = await start_receiver()
    yield receiver
    await runner.cleanup()


async def endpoint(api: Api, tenant: TenantHandle, url: str, **body: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/webhook-endpoints", json={"url": url, **body}, headers=tenant.key_headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def inbound(
    api: Api, tenant: TenantHandle, integration: dict[str, Any], n: int, chat: str = "chat-1"
) -> None:
    for i in range(n):
        payload = message_payload(f"message {i}", message_id=f"{chat}-m{i}", chat=chat)
        response = await post_inbound(api, integration, payload, event_id=f"{chat}-e{i}")
        assert response.status_code == 200


async def settled(api: Api, tenant: TenantHandle, endpoint_id: str, count: int) -> dict[str, Any]:
    """The delivery log once `count` deliveries succeeded (rows are updated just after the
    receiver answers, so a test that saw the requests may be a moment early)."""

    async def check() -> dict[str, Any] | None:
        page: dict[str, Any] = (
            await api.client.get(
                f"/v1/webhook-deliveries?endpoint_id={endpoint_id}", headers=tenant.key_headers
            )
        ).json()
        statuses = [d["status"] for d in page["data"]]
        return page if statuses == ["succeeded"] * count else None

    result: dict[str, Any] = await eventually(check)
    return result


def received_texts(site: Receiver, path: str = "") -> list[str]:
    return [
        json.loads(r["body"])["data"]["text"]
        for r in site.requests
        if r["path"].endswith(path) and json.loads(r["body"])["type"] == "message.received"
    ]


async def test_deliveries_verify_with_the_reference_library(api: Api, site: Receiver) -> None:
    tenant = await api.tenant()
    created = await endpoint(api, tenant, site.url + "/std", event_types=["message.received"])
    assert created["secret"].startswith("whsec_")
    shown = (
        await api.client.get(f"/v1/webhook-endpoints/{created['id']}", headers=tenant.key_headers)
    ).json()
    assert "secret" not in shown
    integration = await webhook_integration(api, tenant)
    await inbound(api, tenant, integration, 2)
    await eventually(lambda: len(received_texts(site, "/std")) == 2)
    ids = set()
    # Only this tenant's deliveries (a port freed by an earlier test may be reused by this site).
    for request in [r for r in site.requests if json.loads(r["body"]).get("tenant_id") == tenant.id]:
        payload = Webhook(created["secret"]).verify(request["body"], request["headers"])
        assert payload["type"] == "message.received"
        assert request["headers"]["webhook-id"] == payload["id"]
        ids.add(payload["id"])
    assert len(ids) == 2
    log = await settled(api, tenant, created["id"], 2)
    detail = (
        await api.client.get(f"/v1/webhook-deliveries/{log['data'][0]['id']}", headers=tenant.key_headers)
    ).json()
    assert detail["attempts_log"][0]["response_status"] == 200
    assert "webhook-signature" not in detail["attempts_log"][0]["request_headers"]


async def test_unsafe_targets_are_refused(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(outbound_allow_hosts=[], outbound_allow_http=False)
    async with running_api(settings) as api:
        tenant = await api.tenant()
        for url, reason in [
            ("http://127.0.0.1/", "loopback"),
            ("https://127.0.0.1/", "loopback"),
            ("https://169.254.169.254/latest/meta-data", "metadata"),
            ("https://10.0.0.1/hook", "private"),
            ("http://example.com/hook", "https"),
        ]:
            response = await api.client.post(
                "/v1/webhook-endpoints", json={"url": url}, headers=tenant.key_headers
            )
            assert response.status_code == 422, url
            assert reason in response.json()["detail"].lower(), (url, response.json()["detail"])


async def test_a_receiver_down_for_two_hours_gets_everything_in_order(
    settings_factory: Callable[..., Settings], site: Receiver
) -> None:
    clock = MovableClock()
    async with running_api(settings_factory(), clock=clock) as api:
        tenant = await api.tenant()
        created = await endpoint(
            api, tenant, site.url + "/down", event_types=["message.received"], ordering="conversation"
        )
        integration = await webhook_integration(api, tenant)
        site.responses.extend([(503, {})] * 1000)
        await inbound(api, tenant, integration, 3)
        await eventually(lambda: len(site.requests) >= 1)  # the first attempt failed at once
        elapsed = 0.0
        for step in (6, 360, 2200, 8700):  # past 5 s, 5 min, 30 min, 2 h (+20 % jitter)
            clock.offset += timedelta(seconds=step)
            elapsed += step
            before = len(site.requests)
            await eventually(lambda: len(site.requests) > before, timeout=10)  # noqa: B023
        assert elapsed >= 2 * 3600
        assert received_texts(site, "/down")[0] == "message 0"  # strictly ordered: only the first was tried
        site.responses.clear()  # the receiver is back
        clock.offset += timedelta(seconds=18000 * 1.2 + 5)
        await eventually(
            lambda: received_texts(site, "/down")[-3:] == ["message 0", "message 1", "message 2"], timeout=30
        )
        successes = site.requests[-3:]
        # Signed at the (simulated) delivery time; the reference library would compare with the real clock.
        now = clock().timestamp()
        ids = [signing.verify(created["secret"], r["headers"], r["body"], now=now).msg_id for r in successes]
        assert len(set(ids)) == 3
        first_ids = {
            r["headers"]["webhook-id"]
            for r in site.requests
            if json.loads(r["body"])["data"]["text"] == "message 0"
        }
        assert len(first_ids) == 1  # retries of one event keep one webhook-id
        await settled(api, tenant, created["id"], 3)


async def test_outcomes_are_recorded_together_after_the_linger_but_ordered_ones_at_once(
    settings_factory: Callable[..., Settings], site: Receiver
) -> None:
    """Recording outcomes is bookkeeping and waits to be grouped (the receiver is never kept
    waiting); an endpoint ordered per conversation has its outcome recorded at once, since the
    conversation's next delivery waits for it."""
    linger = 1.0
    async with running_api(settings_factory(delivery_record_linger_ms=linger * 1000)) as api:
        for ordering, path in (("none", "/grouped"), ("conversation", "/ordered")):
            tenant = await api.tenant()
            created = await endpoint(
                api, tenant, site.url + path, event_types=["message.received"], ordering=ordering
            )
            integration = await webhook_integration(api, tenant)
            await inbound(api, tenant, integration, 1, chat=f"chat{path.strip('/')}")
            await eventually(lambda: len(received_texts(site, path)) == 1)  # noqa: B023
            received = time.perf_counter()
            await settled(api, tenant, created["id"], 1)
            recorded_after = time.perf_counter() - received
            if ordering == "none":
                assert recorded_after >= linger * 0.5, recorded_after
            else:
                assert recorded_after < linger * 0.5, recorded_after


async def test_410_disables_the_endpoint_and_tells_the_tenant(api: Api, site: Receiver) -> None:
    tenant = await api.tenant()
    gone = await endpoint(api, tenant, site.url + "/gone", event_types=["message.received"])
    watcher = await endpoint(api, tenant, site.url + "/watch", event_types=["endpoint.disabled"])
    site.responses.append((410, {}))
    integration = await webhook_integration(api, tenant)
    await inbound(api, tenant, integration, 1)

    async def disabled() -> dict[str, Any] | None:
        current = (
            await api.client.get(f"/v1/webhook-endpoints/{gone['id']}", headers=tenant.key_headers)
        ).json()
        return current if not current["enabled"] else None

    current = await eventually(disabled)
    assert "410" in current["disabled_reason"]
    await eventually(lambda: any(r["path"].endswith("/watch") for r in site.requests))
    told = next(json.loads(r["body"]) for r in site.requests if r["path"].endswith("/watch"))
    assert told["type"] == "endpoint.disabled"
    assert told["data"]["endpoint_id"] == gone["id"]
    assert watcher["id"] != gone["id"]


async def test_secret_rotation_signs_with_both_during_grace(api: Api, site: Receiver) -> None:
    tenant = await api.tenant()
    created = await endpoint(api, tenant, site.url + "/rot", event_types=["message.received"])
    rotated = await api.client.post(
        f"/v1/webhook-endpoints/{created['id']}/rotate-secret",
        json={"grace_hours": 1},
        headers=tenant.key_headers,
    )
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != created["secret"]
    integration = await webhook_integration(api, tenant)
    await inbound(api, tenant, integration, 1)
    await eventually(lambda: any(r["path"].endswith("/rot") for r in site.requests))
    request = next(r for r in site.requests if r["path"].endswith("/rot"))
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (created["secret"], new_secret):
        Webhook(secret).verify(request["body"], request["headers"])


async def test_dead_letters_resend_and_recover(
    settings_factory: Callable[..., Settings], site: Receiver
) -> None:
    async with running_api(settings_factory(webhook_retry_schedule_seconds="0,0")) as api:
        tenant = await api.tenant()
        created = await endpoint(api, tenant, site.url + "/flaky", event_types=["message.received"])
        site.responses.extend([(500, {})] * 4)
        integration = await webhook_integration(api, tenant)
        await inbound(api, tenant, integration, 2)

        async def dead() -> list[dict[str, Any]]:
            page = await api.client.get("/v1/webhook-deliveries?status=dead", headers=tenant.key_headers)
            data: list[dict[str, Any]] = page.json()["data"]
            return data if len(data) == 2 else []

        letters = await eventually(dead)
        assert {d["attempts"] for d in letters} == {2}
        resent = await api.client.post(
            f"/v1/webhook-deliveries/{letters[0]['id']}/resend", headers=tenant.key_headers
        )
        assert resent.status_code == 202
        await eventually(lambda: len(received_texts(site, "/flaky")) >= 5)
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        recovered = await api.client.post(
            f"/v1/webhook-endpoints/{created['id']}/recover",
            json={"since": since},
            headers=tenant.key_headers,
        )
        assert recovered.status_code == 202
        assert recovered.json()["requeued"] == 1

        async def all_succeeded() -> bool:
            page = await api.client.get(
                f"/v1/webhook-deliveries?endpoint_id={created['id']}", headers=tenant.key_headers
            )
            return {d["status"] for d in page.json()["data"]} == {"succeeded"}

        await eventually(all_succeeded)


async def test_lovable_format_with_secret_header(api: Api, site: Receiver) -> None:
    tenant = await api.tenant()
    await endpoint(
        api,
        tenant,
        site.url + "/crm",
        format="lovable",
        format_options={"project_id": "proj-1", "account_phone": "+15550001111"},
        format_secret="crm-shared-secret",
    )
    integration = await webhook_integration(api, tenant)
    await inbound(api, tenant, integration, 1)
    await eventually(lambda: any(r["path"].endswith("/crm") for r in site.requests))
    request = next(r for r in site.requests if r["path"].endswith("/crm"))
    assert json.loads(request["body"]) == {
        "project_id": "proj-1",
        "account_phone": "+15550001111",
        "from_id": "user-1",
        "from_username": "alice",
        "text": "message 0",
    }
    assert request["headers"]["X-Lovable-Secret"] == "crm-shared-secret"
