"""The inbound fast path's own handling of the request body: whole or in chunks, too large, or
the client gone before it arrived."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select

from chatgate.api.inbound_fast import MAX_INBOUND_BYTES
from chatgate.delivery import signing
from chatgate.store.models import RawEvent
from tests.conftest import Api
from tests.webhook_helpers import INBOUND_SECRET, message_payload, webhook_integration


async def _stored_bodies(api: Api, integration_id: str) -> list[bytes]:
    async with api.container.db.sessions() as session:
        rows = await session.execute(select(RawEvent.body).where(RawEvent.integration_id == integration_id))
        return [bytes(body) for body in rows.scalars()]


def _signed(body: bytes, event_id: str) -> dict[str, str]:
    return {
        **signing.headers(INBOUND_SECRET, event_id, int(time.time()), body),
        "content-type": "application/json",
    }


async def _in_chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_a_body_sent_in_chunks_is_stored_whole(sqlite_api: Api) -> None:
    integration = await webhook_integration(sqlite_api, await sqlite_api.tenant())
    payload = message_payload("chunked " + "y" * 3000, message_id="c1")
    body = json.dumps(payload).encode()
    response = await sqlite_api.client.post(
        integration["inbound_path"], content=_in_chunks(body, 700), headers=_signed(body, "chunked-1")
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "duplicate": False}
    assert await _stored_bodies(sqlite_api, integration["id"]) == [body]


async def _call_app(
    api: Api, path: str, messages: list[dict[str, Any]], headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """The ASGI app called directly, its body messages exactly as given (an HTTP client would
    choose its own chunks)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *((k.encode(), v.encode()) for k, v in headers.items())],
        "server": ("testserver", 80),
    }
    await api.app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def _raw_event_count(api: Api, integration_id: str) -> int:
    async with api.container.db.sessions() as session:
        count = select(func.count()).select_from(RawEvent).where(RawEvent.integration_id == integration_id)
        return int((await session.execute(count)).scalar_one())


async def test_a_body_over_the_limit_is_413_in_one_message_or_in_chunks_and_nothing_is_stored(
    sqlite_api: Api,
) -> None:
    integration = await webhook_integration(sqlite_api, await sqlite_api.tenant())
    body = b'{"pad":"' + b"x" * MAX_INBOUND_BYTES + b'"}'
    one = await _call_app(
        sqlite_api,
        integration["inbound_path"],
        [{"type": "http.request", "body": body, "more_body": False}],
        _signed(body, "big-1"),
    )
    chunked = await sqlite_api.client.post(
        integration["inbound_path"], content=_in_chunks(body, 1 << 20), headers=_signed(body, "big-2")
    )
    assert one[0] == 413
    assert chunked.status_code == 413
    for detail in (one[1]["detail"], chunked.json()["detail"]):
        assert str(MAX_INBOUND_BYTES) in detail
    assert await _raw_event_count(sqlite_api, integration["id"]) == 0


async def test_a_client_gone_before_its_body_gets_400_and_nothing_is_stored(sqlite_api: Api) -> None:
    integration = await webhook_integration(sqlite_api, await sqlite_api.tenant())
    body = b'{"type":"message.received"}'
    status, answer = await _call_app(
        sqlite_api,
        integration["inbound_path"],
        [{"type": "http.request", "body": body[:5], "more_body": True}, {"type": "http.disconnect"}],
        _signed(body, "gone-1"),
    )
    assert status == 400
    assert "went away" in answer["detail"]
    assert await _raw_event_count(sqlite_api, integration["id"]) == 0
