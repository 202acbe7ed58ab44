"""The simulated Graph API, and the WhatsApp adapter against it over real HTTP (ProviderHttp)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.delivery.http import DeliveryNetworkError, SafeHttpClient
from chatgate.domain.clock import system_clock
from chatgate.domain.errors import (
    AuthRevoked,
    ContentRejected,
    NotFound,
    PayloadTooLarge,
    PermanentProviderError,
    ProviderRateLimited,
    RecipientInvalid,
    TransientProviderError,
)
from chatgate.domain.inbound import ReceivedMessage, StatusUpdate
from chatgate.domain.integrations import IntegrationKind
from chatgate.domain.messages import MessageStatus
from chatgate.providers.base import (
    FetchedMedia,
    InboundRequest,
    IntegrationContext,
    IntegrationRef,
    MediaFetcher,
    OutboundMessage,
)
from chatgate.providers.http import ProviderHttp
from chatgate.providers.whatsapp_cloud.adapter import WhatsAppCloudAdapter
from chatgate.sandbox.graph_api import SandboxGraphApi
from tests.asgi_server import serve_asgi
from tests.contracts import WHATSAPP_WEBHOOKS

NUMBER = "106540352242922"
TOKEN = "sandbox-token-1"
SECRET = "sandbox-app-secret"
CUSTOMER = "15551234567"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@dataclass
class Env:
    sandbox: SandboxGraphApi
    base: str
    http: ProviderHttp
    adapter: WhatsAppCloudAdapter
    uploads: dict[str, FetchedMedia] = field(default_factory=dict)

    def ctx(
        self, *, token: str = TOKEN, number: str = NUMBER, http: ProviderHttp | None = None
    ) -> IntegrationContext:
        async def load(media_id: str) -> FetchedMedia:
            if media_id not in self.uploads:
                raise NotFound(f"no upload {media_id}")
            return self.uploads[media_id]

        return IntegrationContext(
            IntegrationRef(
                "int_wa", "ten_1", IntegrationKind.WHATSAPP_CLOUD, "pub", {"phone_number_id": number}
            ),
            {"access_token": token, "app_secret": SECRET, "verify_token": "v"},
            SafeHttpClient(),
            system_clock,
            api=http or self.http,
            load_media=load,
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    sandbox = SandboxGraphApi()
    sandbox.add_number(
        NUMBER, display_phone_number="+1 555-078-3881", access_token=TOKEN, app_secret=SECRET, waba_id="WABA1"
    )
    http = ProviderHttp(timeout=5)
    async with serve_asgi(sandbox.app) as base:
        yield Env(sandbox, base, http, WhatsAppCloudAdapter(graph_base=base))
        await sandbox.aclose()
        await http.aclose()


@dataclass
class Receiver:
    """A webhook endpoint that keeps what it receives."""

    requests: list[InboundRequest] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def endpoint(self, request: Request) -> Response:
        self.requests.append(
            InboundRequest(
                "POST",
                str(request.url),
                {k.lower(): v for k, v in request.headers.items()},
                await request.body(),
            )
        )
        self.arrived.set()
        return Response(status_code=200)

    async def wait_for(self, count: int) -> None:
        for _ in range(500):
            if len(self.requests) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} webhooks, got {len(self.requests)}")


@pytest.fixture
async def receiver(env: Env) -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    async with serve_asgi(app) as base:
        env.sandbox.configure(NUMBER, callback_url=f"{base}/hook", status_interval=0.0)
        yield receiver
        await env.sandbox.drain()


def text(body: str, **fields: Any) -> OutboundMessage:
    return OutboundMessage(message_id="msg_1", recipient=CUSTOMER, text=body, **fields)


async def graph_post(env: Env, path: str, body: Any, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{env.base}{path}", json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys and value types, list items by their first one."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def fixture(file: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WHATSAPP_WEBHOOKS / f"{file}.json").read_text())[name]
    return data


# Sending


async def test_send_text(env: Env) -> None:
    result = await env.adapter.send(text("Hello there", reply_to_provider_id="wamid.PREV"), env.ctx())
    assert result.provider_message_id.startswith("wamid.")
    (sent,) = env.sandbox.messages
    assert sent.id == result.provider_message_id
    assert sent.body["text"] == {"body": "Hello there"}
    assert sent.body["context"] == {"message_id": "wamid.PREV"}
    (call,) = env.sandbox.calls
    assert (call.method, call.path, call.status, call.authorized) == (
        "POST",
        f"/v23.0/{NUMBER}/messages",
        200,
        True,
    )


async def test_send_long_text_in_parts(env: Env) -> None:
    result = await env.adapter.send(text("a" * 5000), env.ctx())
    assert [len(m.body["text"]["body"]) for m in env.sandbox.messages] == [4096, 904]
    assert result.detail["provider_message_ids"] == [m.id for m in env.sandbox.messages]
    assert result.provider_message_id == env.sandbox.messages[0].id


async def test_send_upload_then_by_id(env: Env) -> None:
    env.uploads["med_1"] = FetchedMedia(PNG, "image/png", "pic.png")
    attachment = {"kind": "image", "media_id": "med_1"}
    result = await env.adapter.send(text("look", attachments=[attachment]), env.ctx())
    upload, send = env.sandbox.calls
    assert (upload.path, upload.status) == (f"/v23.0/{NUMBER}/media", 200)
    assert upload.form is not None
    assert upload.form["messaging_product"] == "whatsapp"
    assert upload.form["type"] == "image/png"
    assert upload.form["file"]["size"] == len(PNG)
    (stored,) = env.sandbox.media.values()
    assert stored.content == PNG
    assert stored.file_name == "pic.png"
    assert send.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "image",
        "image": {"id": stored.id, "caption": "look"},
    }
    assert result.provider_message_id == env.sandbox.messages[0].id


async def test_send_refuses_before_uploading(env: Env) -> None:
    env.uploads["med_1"] = FetchedMedia(PNG, "image/png", "pic.png")
    too_many = [[{"text": str(i)} for i in range(4)]]
    with pytest.raises(ContentRejected, match="at most 3"):
        await env.adapter.send(
            text("q", attachments=[{"kind": "image", "media_id": "med_1"}], buttons=too_many), env.ctx()
        )
    assert env.sandbox.calls == []
    with pytest.raises(ContentRejected, match="no longer exists"):
        await env.adapter.send(text("q", attachments=[{"kind": "document", "media_id": "gone"}]), env.ctx())


async def test_every_kind_of_send_is_accepted_by_the_spec_checking_sandbox(env: Env) -> None:
    context = env.ctx()
    await env.adapter.send(
        text(
            "see", attachments=[{"kind": "document", "url": "https://f.example/a.pdf", "file_name": "a.pdf"}]
        ),
        context,
    )
    await env.adapter.send(
        text("Ok?", buttons=[[{"text": "Yes", "callback_data": "y"}, {"text": "No"}]]), context
    )
    await env.adapter.send(text("Go", buttons=[[{"text": "Site", "url": "https://example.com"}]]), context)
    menu = {"list": {"button": "Pick", "sections": [{"title": "S", "rows": [{"id": "1", "title": "One"}]}]}}
    await env.adapter.send(text("Menu", options=menu), context)
    template = {"name": "order_update", "language": "en_US", "parameters": ["Ann", "42"]}
    await env.adapter.send(OutboundMessage("m2", CUSTOMER, None, template=template), context)
    await env.adapter.mark_read("wamid.INBOUND", context, typing_indicator=True)
    assert [c.status for c in env.sandbox.calls] == [200] * 6
    assert [m.type for m in env.sandbox.messages] == [
        "document",
        "interactive",
        "interactive",
        "interactive",
        "template",
    ]
    assert env.sandbox.calls[-1].json == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.INBOUND",
        "typing_indicator": {"type": "text"},
    }


# Media, number checks


async def test_fetch_inbound_media(env: Env) -> None:
    assert isinstance(env.adapter, MediaFetcher)
    inbound = await env.sandbox.emit_inbound(
        NUMBER,
        {
            "from": CUSTOMER,
            "type": "image",
            "media": {"content_base64": base64.b64encode(PNG).decode(), "mime_type": "image/png"},
        },
        deliver=False,
    )
    (event,) = env.adapter.parse_inbound(json.dumps(inbound["payload"]).encode(), {})
    assert isinstance(event, ReceivedMessage)
    file_id = event.attachments[0].provider_file_id
    assert file_id is not None
    assert file_id == inbound["media_id"]
    fetched = await env.adapter.fetch_media(file_id, env.ctx(), max_bytes=1_000_000)
    assert fetched.content == PNG
    assert fetched.mime_type == "image/png"
    download = env.sandbox.calls[-1]
    assert (download.path, download.authorized) == ("/whatsapp_business/attachments/", True)
    calls = len(env.sandbox.calls)
    with pytest.raises(PayloadTooLarge, match=f"the file is {len(PNG)} bytes"):
        await env.adapter.fetch_media(file_id, env.ctx(), max_bytes=100)
    # file_size is checked first: nothing is downloaded
    assert [c.path for c in env.sandbox.calls[calls:]] == [f"/v23.0/{file_id}"]
    with pytest.raises(NotFound):
        await env.adapter.fetch_media("999999", env.ctx(), max_bytes=1_000_000)
    # the media URL serves nothing without the number's token
    info = env.sandbox.media[file_id]
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{env.base}/v23.0/{info.id}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            url = (await resp.json())["url"]
        async with session.get(url) as resp:
            assert resp.status == 401
        async with session.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == 190


async def test_validate_number(env: Env) -> None:
    info = await env.adapter.validate_number(env.ctx())
    assert info == {
        "id": NUMBER,
        "display_phone_number": "+1 555-078-3881",
        "verified_name": "Sandbox Business",
        "quality_rating": "GREEN",
    }
    assert env.sandbox.calls[-1].query == {"fields": "display_phone_number,verified_name,quality_rating"}
    with pytest.raises(AuthRevoked, match="refused the access token"):
        await env.adapter.validate_number(env.ctx(token="bad"))
    with pytest.raises(NotFound, match="no phone number with id 4242"):
        await env.adapter.validate_number(env.ctx(number="4242"))


# Faults and errors


async def test_rate_limit_faults(env: Env) -> None:
    env.sandbox.add_fault("rate_limit", retry_after=7, path="/messages")
    with pytest.raises(ProviderRateLimited) as throughput:
        await env.adapter.send(text("hi"), env.ctx())
    assert throughput.value.retry_after == 7.0
    assert throughput.value.details["provider_code"] == "130429"
    env.sandbox.add_fault("pair_rate_limit", phone_number_id=NUMBER)
    with pytest.raises(ProviderRateLimited) as pair:
        await env.adapter.send(text("hi"), env.ctx())
    assert pair.value.retry_after == 6.0
    assert pair.value.details["bucket"] == f"wa:{NUMBER}:{CUSTOMER}"
    await env.adapter.send(text("hi"), env.ctx())  # each fault was for one call only
    assert [c.fault for c in env.sandbox.calls] == ["rate_limit", "pair_rate_limit", None]
    assert env.sandbox.faults == []


@pytest.mark.parametrize(
    ("kind", "expected", "code"),
    [
        ("server_error", TransientProviderError, "131000"),
        ("unavailable", TransientProviderError, "2"),
        ("auth", AuthRevoked, "190"),
        ("undeliverable", RecipientInvalid, "131026"),
        ("reengagement", PermanentProviderError, "131047"),
        ("invalid_parameter", ContentRejected, "100"),
    ],
)
async def test_error_faults(env: Env, kind: str, expected: type[Exception], code: str) -> None:
    env.sandbox.add_fault(kind, times=2)
    for _ in range(2):
        with pytest.raises(expected) as caught:
            await env.adapter.send(text("hi"), env.ctx())
        assert type(caught.value) is expected
        assert getattr(caught.value, "details", {})["provider_code"] == code
    await env.adapter.send(text("hi"), env.ctx())


async def test_custom_and_slow_faults(env: Env) -> None:
    env.sandbox.add_fault("error", status=400, code=131021, message="Recipient cannot be sender")
    with pytest.raises(RecipientInvalid, match="Recipient cannot be sender"):
        await env.adapter.send(text("hi"), env.ctx())
    env.sandbox.add_fault("slow", delay=1.0)
    impatient = ProviderHttp(timeout=0.2)
    try:
        with pytest.raises(DeliveryNetworkError, match="did not answer") as slow:
            await env.adapter.send(text("hi"), env.ctx(http=impatient))
        assert isinstance(slow.value, TransientProviderError)
    finally:
        await impatient.aclose()
    env.sandbox.add_fault("auth", path="/media", method="GET")  # does not match a POST …/messages
    await env.adapter.send(text("hi"), env.ctx())
    assert len(env.sandbox.faults) == 1


async def test_network_failure_is_transient(env: Env) -> None:
    adapter = WhatsAppCloudAdapter(graph_base="http://127.0.0.1:9")
    with pytest.raises(TransientProviderError):
        await adapter.send(text("hi"), env.ctx())


# The 24-hour window


async def test_window_reject_mode(env: Env) -> None:
    env.sandbox.configure(NUMBER, window_mode="reject")
    with pytest.raises(PermanentProviderError, match="template") as closed:
        await env.adapter.send(text("hello again"), env.ctx())
    assert closed.value.details["provider_code"] == "131047"
    template = {"name": "hello_world", "language": "en_US"}
    await env.adapter.send(OutboundMessage("m", CUSTOMER, None, template=template), env.ctx())
    await env.sandbox.emit_inbound(NUMBER, {"from": CUSTOMER, "text": "hi"}, deliver=False)
    await env.adapter.send(text("hello again"), env.ctx())
    env.sandbox.set_window(NUMBER, CUSTOMER, None)
    with pytest.raises(PermanentProviderError, match="24 hours"):
        await env.adapter.send(text("and again"), env.ctx())
    env.sandbox.set_window(NUMBER, CUSTOMER, env.sandbox.clock() - 25 * 3600)
    with pytest.raises(PermanentProviderError, match="24 hours"):
        await env.adapter.send(text("and again"), env.ctx())


async def test_window_webhook_mode_reports_a_failed_status(env: Env, receiver: Receiver) -> None:
    env.sandbox.configure(NUMBER, window_mode="webhook")
    result = await env.adapter.send(text("late"), env.ctx())
    await receiver.wait_for(1)
    (status,) = env.adapter.parse_inbound(receiver.requests[0].body, {})
    assert isinstance(status, StatusUpdate)
    assert (status.provider_message_id, status.status, status.error_code) == (
        result.provider_message_id,
        MessageStatus.FAILED,
        "131047",
    )


# Webhooks the sandbox emits


async def test_inbound_webhook_is_signed_and_shaped_like_the_fixtures(env: Env, receiver: Receiver) -> None:
    answer = await env.sandbox.emit_inbound(
        NUMBER, {"from": CUSTOMER, "name": "Zoë", "type": "text", "text": "héllo"}
    )
    assert answer["delivery"]["status"] == 200
    (request,) = receiver.requests
    env.adapter.verify_inbound(request, env.ctx())
    assert b"\\u00e9" in request.body  # serialised like Meta: non-ASCII escaped, signature over those bytes
    assert shape(json.loads(request.body)) == shape(fixture("message", "text"))
    (event,) = env.adapter.parse_inbound(request.body, request.headers)
    assert isinstance(event, ReceivedMessage)
    assert (event.text, event.sender.display_name, event.sender.phone) == ("héllo", "Zoë", f"+{CUSTOMER}")
    assert event.provider_message_id == answer["message_id"]
    assert env.adapter.phone_number_ids(request.body) == [NUMBER]


@pytest.mark.parametrize(
    ("spec", "fixture_case"),
    [
        (
            {
                "type": "interactive",
                "reply": {"type": "button_reply", "id": "callback_data", "title": "title"},
                "context_id": "wamid.x",
            },
            ("callback_button", "button"),
        ),
        ({"type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "👍"}}, ("message", "reaction")),
        (
            {"type": "location", "location": {"latitude": 1.5, "longitude": 2.5}},
            ("message", "current_location"),
        ),
        (
            {"type": "audio", "media": {"content_base64": "AAAA", "mime_type": "audio/ogg", "voice": True}},
            ("message", "voice"),
        ),
        (
            {
                "type": "document",
                "media": {
                    "content_base64": "AAAA",
                    "mime_type": "application/pdf",
                    "filename": "f.pdf",
                    "caption": "c",
                },
            },
            ("message", "document"),
        ),
    ],
)
async def test_inbound_kinds_match_the_fixture_shapes(
    env: Env, spec: dict[str, Any], fixture_case: tuple[str, str]
) -> None:
    answer = await env.sandbox.emit_inbound(NUMBER, {"from": CUSTOMER, **spec}, deliver=False)
    produced = answer["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]
    expected = fixture(*fixture_case)["entry"][0]["changes"][0]["value"]["messages"][0]
    context_free = {k: v for k, v in expected.items() if k != "context"}
    assert shape({k: v for k, v in produced.items() if k != "context"}) == shape(context_free)
    (event,) = env.adapter.parse_inbound(json.dumps(answer["payload"]).encode(), {})
    assert type(event).__name__ in ("ReceivedMessage", "Reaction")


async def test_status_webhooks_follow_accepted_messages(env: Env, receiver: Receiver) -> None:
    result = await env.adapter.send(text("hi"), env.ctx())
    await receiver.wait_for(3)
    await env.sandbox.drain()
    statuses = []
    for request in receiver.requests:
        env.adapter.verify_inbound(request, env.ctx())
        (event,) = env.adapter.parse_inbound(request.body, request.headers)
        assert isinstance(event, StatusUpdate)
        statuses.append((event.provider_message_id, event.status))
    assert statuses == [
        (result.provider_message_id, s)
        for s in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
    ]
    first = json.loads(receiver.requests[0].body)
    assert shape(first) == shape(fixture("message_status", "sent"))
    # and on request, with an error
    deliveries = await env.sandbox.emit_statuses(
        NUMBER,
        result.provider_message_id,
        ["failed"],
        error={"code": 131026, "title": "Message undeliverable"},
    )
    assert deliveries[0].status == 200
    (failed,) = env.adapter.parse_inbound(receiver.requests[-1].body, {})
    assert isinstance(failed, StatusUpdate)
    assert (failed.status, failed.error_code, failed.error_message) == (
        MessageStatus.FAILED,
        "131026",
        "Message undeliverable",
    )
    assert shape(json.loads(receiver.requests[-1].body)) == shape(fixture("message_status", "failed"))


async def test_a_tampered_webhook_is_refused(env: Env, receiver: Receiver) -> None:
    await env.sandbox.emit_inbound(NUMBER, {"from": CUSTOMER, "text": "pay 10"})
    (request,) = receiver.requests
    forged = InboundRequest(request.method, request.url, request.headers, request.body.replace(b"10", b"99"))
    with pytest.raises(Exception, match="does not match"):
        env.adapter.verify_inbound(forged, env.ctx())


# The Graph API surface itself


async def test_the_sandbox_rejects_invalid_bodies(env: Env) -> None:
    four = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pick"},
            "action": {
                "buttons": [{"type": "reply", "reply": {"id": str(i), "title": str(i)}} for i in range(4)]
            },
        },
    }
    status, answer = await graph_post(env, f"/v23.0/{NUMBER}/messages", four)
    assert status == 400
    assert answer["error"]["code"] == 100
    assert "interactive.action" in answer["error"]["error_data"]["details"]
    assert "fbtrace_id" in answer["error"]
    status, answer = await graph_post(
        env,
        f"/v23.0/{NUMBER}/messages",
        {"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text", "text": {"body": "x"}},
    )
    assert (status, answer["error"]["error_data"]["details"]) == (
        400,
        "(body): 'recipient_type' is a required property",
    )
    status, answer = await graph_post(env, f"/v23.0/{NUMBER}/messages", {"messaging_product": "sms"})
    assert (status, answer["error"]["code"]) == (400, 100)
    by_unknown_id = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "image",
        "image": {"id": "123"},
    }
    status, answer = await graph_post(env, f"/v23.0/{NUMBER}/messages", by_unknown_id)
    assert status == 400
    assert "was not uploaded" in answer["error"]["error_data"]["details"]
    assert env.sandbox.messages == []


async def test_the_sandbox_checks_tokens_and_paths(env: Env) -> None:
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CUSTOMER,
        "type": "text",
        "text": {"body": "x"},
    }
    status, answer = await graph_post(env, f"/v23.0/{NUMBER}/messages", body, token="nope")
    assert (status, answer["error"]["code"], answer["error"]["type"]) == (401, 190, "OAuthException")
    status, answer = await graph_post(env, f"/v23.0/{NUMBER}/messages", body, token=None)
    assert (status, answer["error"]["code"]) == (401, 104)
    status, answer = await graph_post(env, "/v23.0/777/messages", body)
    assert (status, answer["error"]["code"], answer["error"]["error_subcode"]) == (400, 100, 33)
    status, answer = await graph_post(env, f"/latest/{NUMBER}/messages", body)
    assert (status, answer["error"]["code"]) == (400, 2500)
    assert [c.authorized for c in env.sandbox.calls] == [False, False, True, None]


async def test_the_http_control_api(env: Env) -> None:
    async with aiohttp.ClientSession(base_url=env.base) as session:
        async with session.post(
            "/sandbox/numbers",
            json={
                "phone_number_id": "2002",
                "display_phone_number": "+1 555 0002",
                "access_token": "t2",
                "app_secret": "s2",
                "waba_id": "W2",
                "window_mode": "reject",
            },
        ) as resp:
            assert resp.status == 201
            created = await resp.json()
            assert created["window_mode"] == "reject"
            assert "access_token" not in created
        async with session.post("/sandbox/numbers", json={"phone_number_id": "x"}) as resp:
            assert resp.status == 400
        async with session.post(
            "/sandbox/faults", json={"kind": "server_error", "times": 1, "phone_number_id": "2002"}
        ) as resp:
            assert resp.status == 201
        async with session.post("/sandbox/faults", json={"kind": "nonsense"}) as resp:
            assert resp.status == 400
        ctx = env.ctx(token="t2", number="2002")
        with pytest.raises(TransientProviderError):
            await env.adapter.validate_number(ctx)
        async with session.post(
            "/sandbox/numbers/2002/window", json={"wa_id": CUSTOMER, "open": True}
        ) as resp:
            assert resp.status == 200
        await env.adapter.send(text("window is open"), ctx)
        async with session.post(
            "/sandbox/numbers/2002/inbound", json={"from": CUSTOMER, "text": "hi", "deliver": False}
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["message_id"].startswith("wamid.")
        async with session.post(
            "/sandbox/numbers/2002/inbound", json={"from": CUSTOMER, "type": "fax"}
        ) as resp:
            assert resp.status == 400
        async with session.get("/sandbox/calls") as resp:
            calls = await resp.json()
            assert [(c["path"], c["status"], c["fault"]) for c in calls] == [
                ("/v23.0/2002", 500, "server_error"),
                ("/v23.0/2002/messages", 200, None),
            ]
        async with session.get("/sandbox/messages") as resp:
            assert [m["body"]["text"]["body"] for m in await resp.json()] == ["window is open"]
        async with session.post("/sandbox/reset") as resp:
            assert resp.status == 204
    assert env.sandbox.numbers == {}


async def test_webhook_without_callback_is_recorded_not_sent(env: Env) -> None:
    answer = await env.sandbox.emit_inbound(NUMBER, {"from": CUSTOMER, "text": "x"})
    assert answer["delivery"]["status"] is None
    assert "no callback_url" in answer["delivery"]["error"]
    assert env.sandbox.deliveries[0].payload == answer["payload"]


def test_sandbox_inputs_are_checked() -> None:
    sandbox = SandboxGraphApi()
    with pytest.raises(ValueError, match="window_mode"):
        sandbox.add_number(
            "1", display_phone_number="1", access_token="t", app_secret="s", waba_id="w", window_mode="maybe"
        )
    with pytest.raises(ValueError, match="needs status and code"):
        sandbox.add_fault("error")
    with pytest.raises(ValueError, match="times"):
        sandbox.add_fault("rate_limit", times=0)
