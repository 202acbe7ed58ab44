"""Media upload and download."""

from __future__ import annotations

import hashlib
import os

from sqlalchemy import select

from chatgate.store.models import Message
from tests.conftest import Api
from tests.webhook_helpers import eventually, message_payload, post_inbound, webhook_integration


async def test_upload_and_download_round_trip(api: Api) -> None:
    tenant = await api.tenant()
    content = os.urandom(300_000)  # bigger than a MySQL BLOB (64 KiB)
    uploaded = await api.client.post(
        "/v1/media", files={"file": ("card.png", content, "image/png")}, headers=tenant.key_headers
    )
    assert uploaded.status_code == 201, uploaded.text
    media = uploaded.json()
    assert media["size"] == len(content)
    assert media["sha256"] == hashlib.sha256(content).hexdigest()
    downloaded = await api.client.get(media["url"], headers=tenant.key_headers)
    assert downloaded.status_code == 200
    assert downloaded.content == content
    assert downloaded.headers["content-type"] == "image/png"
    assert 'filename="card.png"' in downloaded.headers["content-disposition"]


async def test_upload_limits_and_errors(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    limit = sqlite_api.container.settings.max_upload_bytes
    too_big = await sqlite_api.client.post(
        "/v1/media",
        files={"file": ("big.bin", b"x" * (limit + 1), "application/octet-stream")},
        headers=tenant.key_headers,
    )
    assert too_big.status_code == 413
    assert str(limit) in too_big.json()["detail"]
    empty = await sqlite_api.client.post(
        "/v1/media", files={"file": ("empty.txt", b"", "text/plain")}, headers=tenant.key_headers
    )
    assert empty.status_code == 422
    assert "empty" in empty.json()["detail"]
    missing = await sqlite_api.client.post("/v1/media", headers=tenant.key_headers)
    assert missing.status_code == 422
    # A JSON body above the normal 1 MiB limit is still refused elsewhere.
    assert sqlite_api.container.settings.max_body_bytes < limit


async def test_received_attachment_links_to_media(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    payload = message_payload(
        "see photo",
        message_id="m-photo",
        attachments=[
            {
                "kind": "image",
                "url": "https://files.example.com/p.jpg",
                "mime_type": "image/jpeg",
                "size": 1234,
            }
        ],
    )
    await post_inbound(sqlite_api, integration, payload, event_id="photo-1")

    async def stored() -> Message | None:
        async with sqlite_api.container.db.sessions() as session:
            query = select(Message).where(Message.provider_message_id == "m-photo")
            return (await session.execute(query)).scalar_one_or_none()

    message = await eventually(stored)
    attachment = message.attachments[0]
    assert attachment["kind"] == "image"
    assert attachment["size"] == 1234
    assert attachment["url"] == f"/v1/media/{attachment['media_id']}"
    redirect = await sqlite_api.client.get(attachment["url"], headers=tenant.key_headers)
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "https://files.example.com/p.jpg"
