"""A bot token never leaks (docs/providers/telegram.md, "Never the token").

Bot tokens are in every Bot API URL, so every path that touches one is driven here — connect,
wrong, revoked and unreachable-API connects, faults, sends, failures, edits, media fetches, the
seed 000 token-in-URL webhook — and then every log line, every API answer (problem+json errors
too), `/metrics`, the raw events and the audit log are searched for the tokens and the webhook
secrets, whole and in part.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from chatgate.config import Settings
from chatgate.observability.logging import configure_logging
from tests.conftest import TenantHandle
from tests.telegram_helpers import (
    SECRET_HEADER,
    Stack,
    message_status,
    raw_events,
    settled_raw_events,
    telegram_stack,
    text_update,
    until,
)

USER = 4242


class Recorder:
    """Every answer chatgate gave, kept for the final scan."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    async def ahook(self, response: httpx.Response) -> None:
        await response.aread()
        self.bodies.append(f"{response.status_code} {dict(response.headers)} {response.text}")


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    configure_logging("WARNING", json_output=False)


def secrets_of(stack: Stack) -> list[str]:
    """The tokens (current and revoked) and webhook secrets of every bot, and their secret parts
    (a token without its `<id>:` prefix still controls the bot)."""
    found: list[str] = list(stack.tokens)
    for bot in stack.bots:
        webhook = stack.sandbox.inspect_bot(bot.id, calls=False)["webhook"]
        if webhook and webhook["secret_token"]:
            found.append(webhook["secret_token"])
    return found + [t.split(":", 1)[1] for t in found if ":" in t]


async def test_no_token_in_logs_answers_metrics_raw_events_or_audit(
    settings_factory: Callable[..., Settings], json_logs: io.StringIO
) -> None:
    async with telegram_stack(settings_factory, telegram_token_in_url_webhooks=True) as stack:
        # After the servers are up: uvicorn configures its own loggers when it starts.
        configure_logging("DEBUG", json_output=True, stream=json_logs)
        recorder = Recorder()
        stack.api.client.event_hooks["response"] = [recorder.ahook]
        stack.tokens = []
        tenant = await stack.api.tenant()
        await _drive(stack, tenant)
        await _seed_token_in_url(stack, tenant)
        await stack.deliveries()

        for path in ("/v1/audit-log?limit=200", "/v1/integrations", "/v1/channels", "/v1/conversations"):
            assert (await stack.api.client.get(path, headers=tenant.key_headers)).status_code == 200
        for row in await raw_events(stack.api, tenant, stack.integration_id):
            detail = await stack.api.client.get(f"/v1/raw-events/{row['id']}", headers=tenant.key_headers)
            assert detail.status_code == 200
        assert (await stack.api.client.get("/metrics")).status_code == 200

        logs = json_logs.getvalue()
        lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        assert len(lines) > 50
        assert any(line["logger"] == "chatgate.access" and line["status"] == 502 for line in lines)
        answers = "\n".join(recorder.bodies)
        assert "Telegram: Forbidden: bot was blocked by the user" in answers  # the errors are there
        for secret in secrets_of(stack):
            assert secret not in logs, f"a secret is in the logs: {_around(logs, secret)}"
            assert secret not in answers, f"a secret is in an API answer: {_around(answers, secret)}"


def _around(text: str, secret: str) -> str:
    at = text.find(secret)
    return text[max(0, at - 300) : at + 100]


async def _drive(stack: Stack, tenant: TenantHandle) -> None:
    client, headers = stack.api.client, tenant.key_headers
    bot = stack.new_bot()
    stack.tokens.append(bot.token)
    stack.sandbox.define_chat(bot.id, {"id": USER, "type": "private", "first_name": "Ann"})
    integration = await stack.connect(tenant, bot)
    stack.integration_id = integration["id"]
    # A token Telegram does not know, and one that was revoked.
    unknown = f"{bot.id + 500}:SANDBOXnot_a_real_token_but_shaped_like_one_0123"
    stack.tokens.append(unknown)
    for token in (unknown, "12345:short"):
        refused = await client.post(
            "/v1/integrations",
            json={"kind": "telegram_bot", "name": "x", "credentials": {"bot_token": token}},
            headers=headers,
        )
        assert refused.status_code == 422
    revoked_bot = stack.new_bot()
    stack.tokens.append(revoked_bot.token)
    stack.tokens.append(stack.sandbox.revoke_token(revoked_bot.id))
    refused = await client.post(
        "/api/integrations/telegram/connect/", json={"bot_token": stack.tokens[-2]}, headers=headers
    )
    assert refused.status_code == 422
    # The Bot API unreachable (a closed port) for one connect.
    offline = stack.new_bot()
    stack.tokens.append(offline.token)
    adapter = stack.api.container.telegram_bots.adapter
    real_base, adapter.api_base = adapter.api_base, "http://127.0.0.1:9"
    try:
        unreachable = await client.post(
            "/v1/integrations",
            json={"kind": "telegram_bot", "name": "x", "credentials": {"bot_token": offline.token}},
            headers=headers,
        )
    finally:
        adapter.api_base = real_base
    assert unreachable.status_code == 502, unreachable.text
    assert "127.0.0.1:9" in unreachable.json()["detail"]

    # Inbound, sends, faults and failures.
    stack.sandbox.inject_update(bot.id, text_update(USER, "hello"))
    await stack.deliveries()
    (row,) = await settled_raw_events(stack.api, tenant, integration["id"], 1)
    assert row["status"] == "processed"
    stack.sandbox.add_fault(kind="5xx", bot_id=bot.id, method="sendMessage", status=502)
    stack.sandbox.add_fault(kind="slow", bot_id=bot.id, method="sendMessage", delay=0.2)
    ok = await _send(stack, tenant, text="retried after a 502")
    assert ok["status"] == "sent", ok
    unknown_chat = await _send(stack, tenant, to="999", text="to nobody")
    assert unknown_chat["error_message"] == "Telegram: Bad Request: chat not found"
    stack.sandbox.add_fault(kind="403", bot_id=bot.id, method="sendMessage")
    blocked = await _send(stack, tenant, text="blocked")
    assert blocked["status"] == "failed"
    edit = await client.patch(
        f"/v1/messages/{ok['id']}", json={"text": "retried after a 502"}, headers=headers
    )
    assert edit.status_code == 422
    await client.post(
        f"/v1/integrations/{integration['id']}/button-answers", json={"callback_id": "nope"}, headers=headers
    )
    stack.sandbox.add_fault(
        kind="error", bot_id=bot.id, method="getFile", status=400, description="Bad Request: wrong file_id"
    )
    photo = stack.sandbox.upload_file(bot.id, b"\x89PNG...", kind="photo")
    update = text_update(USER, "")
    del update["message"]["text"]
    update["message"]["photo"] = [
        {"file_id": photo.file_id, "file_unique_id": photo.file_unique_id, "width": 1, "height": 1}
    ]
    stack.sandbox.inject_update(bot.id, update)
    await stack.deliveries()
    await settled_raw_events(stack.api, tenant, integration["id"], 2)
    events = (await client.get("/v1/events?types=message.received", headers=headers)).json()["data"]
    media_ids = [a["media_id"] for e in events for a in e["data"]["attachments"]]
    assert media_ids
    failed_fetch = await client.get(f"/v1/media/{media_ids[0]}", headers=headers)
    assert failed_fetch.status_code == 422
    check = await client.post(f"/v1/integrations/{integration['id']}/check", headers=headers)
    assert check.status_code == 200

    # Revoked while connected: a send and a check find out; then a reconnect with the new token.
    stack.tokens.append(stack.sandbox.revoke_token(bot.id))
    gone = await _send(stack, tenant, text="after the revoke")
    assert gone["status"] == "failed"
    assert (
        await client.post(f"/v1/integrations/{integration['id']}/check", headers=headers)
    ).status_code == 200
    wrong = await client.post(
        f"/v1/integrations/{integration['id']}/reconnect",
        json={"bot_token": bot.token + "x"},
        headers=headers,
    )
    assert wrong.status_code == 422
    back = await client.post(
        f"/v1/integrations/{integration['id']}/reconnect",
        json={"bot_token": stack.tokens[-1]},
        headers=headers,
    )
    assert back.status_code == 200
    assert back.json()["status"] == "active"


async def _send(stack: Stack, tenant: TenantHandle, *, to: str = str(USER), text: str) -> dict[str, Any]:
    response = await stack.api.client.post(
        "/v1/messages",
        json={"integration_id": stack.integration_id, "to": to, "text": text},
        headers=tenant.key_headers,
    )
    assert response.status_code == 202, response.text
    return await message_status(stack.api, tenant, response.json()["message"]["id"])


async def _seed_token_in_url(stack: Stack, tenant: TenantHandle) -> None:
    """Seed 000's `/api/integrations/webhooks/telegram/{bot_token}/`: on here; the secret header
    is still required, and no answer repeats the path (it holds the token)."""
    bot = stack.new_bot()
    stack.tokens.append(bot.token)
    integration = await stack.connect(tenant, bot)
    secret = stack.sandbox.inspect_bot(bot.id)["webhook"]["secret_token"]
    path = f"/api/integrations/webhooks/telegram/{bot.token}/"
    body = json.dumps({"update_id": 5, **text_update(USER, "via the token URL", message_id=1)}).encode()
    client = stack.api.client
    for headers in ({}, {SECRET_HEADER: "wrong"}):
        refused = await client.post(path, content=body, headers=headers)
        assert refused.status_code == 401, refused.text
    unknown = await client.post(
        path.replace(bot.token, f"{bot.id}:SANDBOXthe_wrong_token_for_this_bot_0123"), content=body
    )
    assert unknown.status_code == 404
    for method in ("GET", "PUT", "DELETE"):
        other = await client.request(method, path)
        assert other.status_code == 405, other.text
    assert (
        await client.post(path.rstrip("/"), content=body, headers={SECRET_HEADER: secret})
    ).status_code in (
        307,
        404,
        405,
    )
    accepted = await client.post(path, content=body, headers={SECRET_HEADER: secret})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"ok": True, "duplicate": False}
    (row,) = await settled_raw_events(stack.api, tenant, integration["id"], 1)
    assert row["provider_event_id"] == "5"
    assert row["status"] == "processed"

    async def received() -> bool:
        found = (await client.get("/v1/events?types=message.received", headers=tenant.key_headers)).json()[
            "data"
        ]
        return any(e["data"]["text"] == "via the token URL" for e in found)

    await until(received)


async def test_the_token_in_url_path_is_off_by_default(settings_factory: Callable[..., Settings]) -> None:
    async with telegram_stack(settings_factory) as stack:
        tenant = await stack.api.tenant()
        bot = stack.new_bot()
        integration = await stack.connect(tenant, bot)
        secret = stack.sandbox.inspect_bot(bot.id)["webhook"]["secret_token"]
        body = json.dumps({"update_id": 5, **text_update(USER, "hi", message_id=1)}).encode()
        response = await stack.api.client.post(
            f"/api/integrations/webhooks/telegram/{bot.token}/", content=body, headers={SECRET_HEADER: secret}
        )
        assert response.status_code == 404
        assert "disabled" in response.json()["detail"]
        assert bot.token not in response.text
        assert bot.token.split(":")[1] not in response.text
        assert await raw_events(stack.api, tenant, integration["id"]) == []
        audit = await stack.api.client.get("/v1/audit-log?limit=200", headers=tenant.key_headers)
        assert bot.token not in audit.text
