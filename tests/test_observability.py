"""Metrics by route template, JSON logs with request ids, and no secret in any log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from chatgate.observability.logging import configure_logging
from tests.conftest import Api

BOT_TOKEN = "7000000099:TESTObservabilityFakeToken_0123456789abcdef"
API_SECRET = "twilio-auth-token-for-tests-0123456789"


async def test_metrics_use_the_seed_names_and_route_templates(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    await sqlite_api.client.get("/v1/integrations/int_does_not_exist", headers=tenant.key_headers)
    text = (await sqlite_api.client.get("/metrics")).text
    assert 'api_request_total{method="GET",route="/v1/integrations/{integration_id}",status="404"}' in text
    assert (
        'api_request_error_total{method="GET",route="/v1/integrations/{integration_id}",status="404"}' in text
    )
    assert (
        'api_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/integrations/{integration_id}"}'
        in text
    )
    assert "int_does_not_exist" not in text


def _fail_with(secret: str) -> None:
    raise RuntimeError(f"boom with {secret}")


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("DEBUG", json_output=True, stream=stream)
    yield stream
    configure_logging("WARNING", json_output=False)


async def test_logs_are_json_with_request_ids_and_never_carry_secrets(
    sqlite_api: Api, json_logs: io.StringIO
) -> None:
    tenant = await sqlite_api.tenant()
    created = await sqlite_api.client.post(
        "/v1/integrations",
        json={
            "kind": "webhook",
            "name": "b",
            "credentials": {"bot_token": BOT_TOKEN, "extra": API_SECRET},
        },
        headers=tenant.key_headers,
    )
    assert created.status_code == 201
    row = await sqlite_api.container.integrations.get(tenant.id, created.json()["id"])
    await sqlite_api.container.integrations.credentials(row)
    log = logging.getLogger("chatgate.test")
    # The kinds of lines that leak in real systems: URLs with tokens, exceptions, extras.
    log.warning("calling https://api.telegram.org/bot%s/getMe", BOT_TOKEN)
    log.info("provider said", extra={"provider_detail": f"auth {API_SECRET} rejected"})
    try:
        _fail_with(API_SECRET)
    except RuntimeError:
        log.exception("request failed")
    log.info("key %s used", tenant.api_key)
    await sqlite_api.client.get("/v1/me", headers=tenant.key_headers)
    out = json_logs.getvalue()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) >= 5
    for secret in (BOT_TOKEN, API_SECRET, tenant.api_key):
        assert secret not in out
    assert "[REDACTED]" in out
    access = [
        line for line in lines if line.get("logger") == "chatgate.access" and line.get("route") == "/v1/me"
    ]
    assert access
    assert access[-1]["request_id"]
    assert access[-1]["status"] == 200
    assert {"@timestamp", "level", "logger", "message"} <= set(lines[0])


def test_redactor_scales_to_thousands_of_secrets_and_prefers_the_longest() -> None:
    from chatgate.security.redaction import MASK, Redactor

    redactor = Redactor(max_secrets=3000)
    secrets_ = [f"sec-{i:05d}-{'x' * (i % 7)}-tail" for i in range(4000)]
    redactor.register(*secrets_)
    redactor.register("abcdef", "abcdefghij")  # same prefix: the longer one must win
    assert redactor.redact("key=abcdefghij!") == f"key={MASK}!"
    assert redactor.redact(f"a {secrets_[3999]} b {secrets_[1500]}") == f"a {MASK} b {MASK}"
    # The oldest were evicted past max_secrets (and nothing else broke).
    assert redactor.redact(secrets_[0]) == secrets_[0]
    assert redactor.redact("nothing secret here") == "nothing secret here"
