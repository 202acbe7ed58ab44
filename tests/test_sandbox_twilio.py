"""The simulated Twilio API, and the Twilio adapter end to end against it over real HTTP.

Webhooks the sandbox sends (status callbacks, inbound messages) land on a small aiohttp receiver
and are checked with twilio-python's RequestValidator (the oracle) and with the adapter itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from chatgate.delivery.http import SafeHttpClient
from chatgate.domain.clock import system_clock
from chatgate.domain.errors import (
    AuthRevoked,
    ContentRejected,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermanentProviderError,
    ProviderRateLimited,
    RecipientInvalid,
    TransientProviderError,
)
from chatgate.domain.inbound import Ignored, ReceivedMessage, StatusUpdate
from chatgate.domain.integrations import IntegrationKind
from chatgate.domain.messages import MessageStatus
from chatgate.providers.base import InboundRequest, IntegrationContext, IntegrationRef, OutboundMessage
from chatgate.providers.http import ProviderHttp
from chatgate.providers.twilio.adapter import TwilioAdapter
from chatgate.sandbox.twilio_api import (
    Fault,
    SandboxTwilioApi,
    create_message_schema,
    message_resource_schema,
    twilio_signature,
)
from tests.asgi_server import serve_asgi

ACCOUNT = "AC" + "a1" * 16
TOKEN = "sandbox-auth-token-0123456789"
WA_FROM = "whatsapp:+14155238886"
SMS_FROM = "+15550001111"
USER = "+15551234567"
CONTENT = "HX" + "c" * 32


# --- a receiver for webhooks ------------------------------------------------------------------


@dataclass
class Received:
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def inbound(self) -> InboundRequest:
        return InboundRequest("POST", self.url, {k.lower(): v for k, v in self.headers.items()}, self.body)


@dataclass
class Receiver:
    base_url: str
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.requests


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver("")

    async def handle(request: web.Request) -> web.Response:
        state.requests.append(Received(str(request.url), dict(request.headers), await request.read()))
        state.arrived.set()
        return web.Response(text="<Response/>", content_type="text/xml")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.base_url = f"http://{host}:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


# --- the sandbox, served ----------------------------------------------------------------------


@dataclass
class Env:
    sandbox: SandboxTwilioApi
    base_url: str
    http: ProviderHttp
    adapter: TwilioAdapter
    client: aiohttp.ClientSession

    def ctx(
        self,
        *,
        config: Mapping[str, Any] | None = None,
        credentials: Mapping[str, str] | None = None,
        public_base_url: str | None = None,
        http: ProviderHttp | None = None,
    ) -> IntegrationContext:
        return IntegrationContext(
            IntegrationRef(
                "int_tw",
                "ten_tw",
                IntegrationKind.TWILIO,
                "pub_tw",
                dict(config or {"account_sid": ACCOUNT, "from": WA_FROM}),
            ),
            dict(credentials or {"auth_token": TOKEN}),
            SafeHttpClient(),
            system_clock,
            public_base_url=public_base_url,
            api=http or self.http,
        )

    def auth(self, user: str = ACCOUNT, password: str = TOKEN) -> dict[str, str]:
        return {"Authorization": aiohttp.encode_basic_auth(user, password)}

    async def create(self, form: list[tuple[str, str]], **kwargs: Any) -> tuple[int, dict[str, Any]]:
        url = f"{self.base_url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
        async with self.client.post(url, data=form, headers=kwargs.get("auth") or self.auth()) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    sandbox = SandboxTwilioApi()
    sandbox.add_account(ACCOUNT, TOKEN, friendly_name="Chatgate Tests", senders=[WA_FROM, SMS_FROM])
    http = ProviderHttp(timeout=5)
    async with serve_asgi(sandbox.app) as base_url, aiohttp.ClientSession() as client:
        try:
            yield Env(sandbox, base_url, http, TwilioAdapter(base_url), client)
        finally:
            await sandbox.aclose()
            await http.aclose()


def _msg(**kwargs: Any) -> OutboundMessage:
    values: dict[str, Any] = {"message_id": "msg_1", "recipient": USER, "text": "Hello from chatgate"}
    values.update(kwargs)
    return OutboundMessage(**values)


def _twilio_error_shape(body: dict[str, Any], code: int, status: int) -> None:
    assert body["code"] == code
    assert body["status"] == status
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert isinstance(body["message"], str)
    assert body["message"]


# --- the sandbox on its own ---------------------------------------------------------------------


async def test_create_message_resource_matches_the_spec(env: Env) -> None:
    status, body = await env.create([("To", "whatsapp:" + USER), ("From", WA_FROM), ("Body", "hi")])
    assert status == 201
    jsonschema.validate(body, message_resource_schema())
    assert body["sid"].startswith("SM")
    assert len(body["sid"]) == 34
    assert body["status"] == "queued"
    assert body["direction"] == "outbound-api"
    async with env.client.get(f"{env.base_url}{body['uri']}", headers=env.auth()) as resp:
        assert resp.status == 200
        fetched = await resp.json()
    assert fetched["sid"] == body["sid"]
    jsonschema.validate(fetched, message_resource_schema())


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ([("To", USER), ("From", SMS_FROM), ("Body", "x"), ("Bogus", "1")], 20001),
        ([("From", SMS_FROM), ("Body", "x")], 21604),
        ([("To", USER), ("Body", "x")], 21603),
        ([("To", USER), ("From", SMS_FROM)], 21602),
        ([("To", USER), ("From", SMS_FROM), ("Body", "x" * 1601)], 21617),
        ([("To", "12"), ("From", SMS_FROM), ("Body", "x")], 21211),
        ([("To", USER), ("From", "+19999999999"), ("Body", "x")], 21606),
        ([("To", USER), ("From", WA_FROM), ("Body", "x")], 21910),
        ([("To", USER), ("From", SMS_FROM), ("ContentSid", "HX12")], 21655),
        ([("To", USER), ("From", SMS_FROM), ("Body", "x"), ("StatusCallback", "ftp://x")], 21609),
        ([("To", USER), ("From", SMS_FROM), ("MediaUrl", "not a url")], 21620),
        ([("To", USER), ("From", SMS_FROM), ("Body", "x"), ("ValidityPeriod", "soon")], 20001),
        ([("To", USER), ("From", SMS_FROM), ("Body", "x"), ("RiskCheck", "maybe")], 20001),
        ([("To", USER), ("From", SMS_FROM), ("Body", "x"), ("Body", "y")], 20001),
        ([("To", USER), ("MessagingServiceSid", "MG1"), ("Body", "x")], 20001),
    ],
)
async def test_create_message_validation(env: Env, form: list[tuple[str, str]], code: int) -> None:
    status, body = await env.create(form)
    assert status == 400
    _twilio_error_shape(body, code, 400)
    assert env.sandbox.messages == {}


async def test_schema_accepts_every_documented_field(env: Env) -> None:
    assert set(create_message_schema()["properties"]) >= {"To", "From", "Body", "MediaUrl", "ContentSid"}
    status, body = await env.create(
        [
            ("To", USER),
            ("MessagingServiceSid", "MG" + "0" * 32),
            ("Body", "x"),
            ("ValidityPeriod", "600"),
            ("ShortenUrls", "true"),
            ("PersistentAction", "mailto:a@example.com"),
            ("MediaUrl", "https://cdn.example/a.png"),
            ("MediaUrl", "https://cdn.example/b.png"),
        ]
    )
    assert status == 201, body
    assert body["status"] == "accepted"
    assert body["num_media"] == "2"
    assert body["sid"].startswith("MM")


async def test_basic_auth(env: Env) -> None:
    key_sid, key_secret = env.sandbox.add_api_key(ACCOUNT)
    url = f"{env.base_url}/2010-04-01/Accounts/{ACCOUNT}.json"
    for auth in ({}, env.auth(password="wrong"), env.auth(user=key_sid, password="wrong")):
        async with env.client.get(url, headers=auth) as resp:
            assert resp.status == 401
            body = await resp.json()
            _twilio_error_shape(body, 20003, 401)
    for auth in (env.auth(), env.auth(key_sid, key_secret)):
        async with env.client.get(url, headers=auth) as resp:
            assert resp.status == 200
            assert (await resp.json())["friendly_name"] == "Chatgate Tests"
    other = env.sandbox.add_account()
    async with env.client.get(
        f"{env.base_url}/2010-04-01/Accounts/{other.sid}.json", headers=env.auth(key_sid, key_secret)
    ) as resp:
        assert resp.status == 404
        _twilio_error_shape(await resp.json(), 20404, 404)


async def test_control_api_over_http(env: Env) -> None:
    async with env.client.post(f"{env.base_url}/sandbox/accounts", json={"friendly_name": "Other"}) as resp:
        assert resp.status == 201
        account = await resp.json()
    assert account["account_sid"].startswith("AC")
    assert len(account["account_sid"]) == 34
    async with env.client.post(
        f"{env.base_url}/sandbox/accounts/{account['account_sid']}/keys", json={}
    ) as resp:
        assert resp.status == 201
        key = await resp.json()
    assert key["sid"].startswith("SK")
    async with env.client.post(f"{env.base_url}/sandbox/faults", json={"kind": "nonsense"}) as resp:
        assert resp.status == 400
    async with env.client.post(
        f"{env.base_url}/sandbox/faults", json={"kind": "rate_limit", "count": 2}
    ) as resp:
        assert resp.status == 200
        assert [f["kind"] for f in await resp.json()] == ["rate_limit"]
    async with env.client.delete(f"{env.base_url}/sandbox/faults") as resp:
        assert await resp.json() == []
    async with env.client.post(
        f"{env.base_url}/sandbox/settings", json={"whatsapp_window": "sometimes"}
    ) as resp:
        assert resp.status == 400
    async with env.client.get(f"{env.base_url}/sandbox/requests") as resp:
        assert resp.status == 200
        assert isinstance(await resp.json(), list)


async def test_faults_last_n_calls_and_are_recorded(env: Env) -> None:
    env.sandbox.inject_fault(Fault("rate_limit", count=2, retry_after=3))
    form = [("To", USER), ("From", SMS_FROM), ("Body", "x")]
    url = f"{env.base_url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    for _ in range(2):
        async with env.client.post(url, data=form, headers=env.auth()) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "3"
            _twilio_error_shape(await resp.json(), 20429, 429)
    status, _ = await env.create(form)
    assert status == 201
    assert [(r.status, r.fault) for r in env.sandbox.requests] == [
        (429, "rate_limit"),
        (429, "rate_limit"),
        (201, None),
    ]
    assert env.sandbox.requests[0].form == form
    assert env.sandbox.requests[0].auth_user == ACCOUNT


async def test_status_callbacks_are_signed_like_twilio(env: Env, receiver: Receiver) -> None:
    callback = f"{receiver.base_url}/in/twilio/pub_tw"
    status, body = await env.create(
        [("To", "whatsapp:" + USER), ("From", WA_FROM), ("Body", "hi"), ("StatusCallback", callback)]
    )
    assert status == 201
    received = await receiver.wait_for(4)
    await env.sandbox.drain()
    assert [r.params["MessageStatus"] for r in received] == ["queued", "sent", "delivered", "read"]
    validator = RequestValidator(TOKEN)
    for item in received:
        assert item.url == callback
        assert item.params["MessageSid"] == body["sid"]
        assert item.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
        assert validator.validate(item.url, item.params, item.headers["X-Twilio-Signature"])
        assert not RequestValidator("other").validate(
            item.url, item.params, item.headers["X-Twilio-Signature"]
        )
    assert [c.response_status for c in env.sandbox.callbacks] == [200] * 4
    assert env.sandbox.messages[body["sid"]].status == "read"


async def test_whatsapp_window_rule(env: Env, receiver: Receiver) -> None:
    env.sandbox.settings.whatsapp_window = "reject"
    freeform = [("To", "whatsapp:" + USER), ("From", WA_FROM), ("Body", "hi")]
    status, body = await env.create(freeform)
    assert status == 400
    _twilio_error_shape(body, 63016, 400)
    status, _ = await env.create([("To", "whatsapp:" + USER), ("From", WA_FROM), ("ContentSid", CONTENT)])
    assert status == 201
    env.sandbox.open_window(ACCOUNT, "whatsapp:" + USER)
    status, _ = await env.create(freeform)
    assert status == 201
    env.sandbox.open_window(ACCOUNT, "whatsapp:" + USER, at=env.sandbox.clock() - 25 * 3600)
    status, _ = await env.create(freeform)
    assert status == 400
    # What Twilio really does: accept, then fail the message with 63016 in its status callback.
    env.sandbox.settings.whatsapp_window = "callback"
    callback = f"{receiver.base_url}/in/twilio/pub_tw"
    status, body = await env.create([*freeform, ("StatusCallback", callback)])
    assert status == 201
    received = await receiver.wait_for(2)
    assert [(r.params["MessageStatus"], r.params.get("ErrorCode")) for r in received] == [
        ("queued", None),
        ("failed", "63016"),
    ]
    assert env.sandbox.messages[body["sid"]].error_code == 63016


async def test_inbound_webhook_and_media(env: Env, receiver: Receiver) -> None:
    content = b"\x89PNG fake image bytes" * 10
    async with env.client.post(
        f"{env.base_url}/sandbox/inbound",
        json={
            "account_sid": ACCOUNT,
            "url": f"{receiver.base_url}/in/twilio/pub_tw",
            "from": "whatsapp:" + USER,
            "to": WA_FROM,
            "body": "look",
            "profile_name": "Ada",
            "media": [{"content_type": "image/png", "content_base64": base64.b64encode(content).decode()}],
        },
    ) as resp:
        assert resp.status == 200
        result = await resp.json()
    assert result["response"]["status"] == 200
    (item,) = receiver.requests
    params = item.params
    assert params["MessageSid"] == result["message_sid"]
    assert params["MessageSid"].startswith("MM")
    for name in ("SmsSid", "AccountSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "MediaContentType0"):
        assert name in params
    assert (params["SmsStatus"], params["ProfileName"], params["WaId"]) == ("received", "Ada", USER[1:])
    assert RequestValidator(TOKEN).validate(item.url, params, item.headers["X-Twilio-Signature"])
    async with env.client.get(params["MediaUrl0"], allow_redirects=False) as resp:
        assert resp.status == 401
    async with env.client.get(params["MediaUrl0"], headers=env.auth(), allow_redirects=False) as resp:
        assert resp.status == 307
        assert resp.headers["Location"].startswith("/cdn/")
    async with env.client.get(params["MediaUrl0"], headers=env.auth()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        assert await resp.read() == content


# --- the adapter end to end ----------------------------------------------------------------------


async def test_send_text_whatsapp(env: Env) -> None:
    result = await env.adapter.send(_msg(), env.ctx())
    message = env.sandbox.messages[result.provider_message_id]
    assert message.to == "whatsapp:" + USER
    assert message.from_ == WA_FROM
    assert message.body == "Hello from chatgate"
    assert message.status_callback is None
    assert result.detail["status"] == "queued"
    (call,) = env.sandbox.requests
    assert (call.method, call.path, call.auth_user) == (
        "POST",
        f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
        ACCOUNT,
    )


async def test_send_with_api_key_and_messaging_service(env: Env) -> None:
    key_sid, key_secret = env.sandbox.add_api_key(ACCOUNT)
    service = "MG" + "5" * 32
    ctx = env.ctx(
        config={"account_sid": ACCOUNT, "messaging_service_sid": service, "channel": "sms"},
        credentials={"api_key_sid": key_sid, "api_key_secret": key_secret, "auth_token": "unused-for-api"},
    )
    result = await env.adapter.send(_msg(), ctx)
    message = env.sandbox.messages[result.provider_message_id]
    assert message.messaging_service_sid == service
    assert message.to == USER
    assert env.sandbox.requests[-1].auth_user == key_sid


async def test_send_media_url_and_upload(env: Env) -> None:
    ctx = env.ctx(config={"account_sid": ACCOUNT, "from": SMS_FROM}, public_base_url="https://gw.example.com")
    attachments = [
        {"kind": "image", "url": "https://cdn.example.com/cat.png", "mime_type": "image/png"},
        {"kind": "document", "media_id": "med_42", "mime_type": "application/pdf", "file_name": "a.pdf"},
    ]
    result = await env.adapter.send(_msg(text="two files", attachments=attachments), ctx)
    message = env.sandbox.messages[result.provider_message_id]
    assert result.provider_message_id.startswith("MM")
    assert message.media_urls == ["https://cdn.example.com/cat.png", "https://gw.example.com/v1/media/med_42"]
    assert message.status_callback == "https://gw.example.com/in/twilio/pub_tw"


async def test_send_template(env: Env) -> None:
    env.sandbox.settings.whatsapp_window = "reject"
    template = {"content_sid": CONTENT, "variables": {"1": "Ada"}}
    result = await env.adapter.send(_msg(text=None, template=template), env.ctx())
    message = env.sandbox.messages[result.provider_message_id]
    assert (message.content_sid, json.loads(message.content_variables or "")) == (CONTENT, {"1": "Ada"})
    with pytest.raises(PermanentProviderError, match="template") as caught:
        await env.adapter.send(_msg(), env.ctx())
    assert caught.value.details["provider_code"] == "63016"
    assert type(caught.value) is PermanentProviderError


async def test_status_callbacks_reach_the_adapter(env: Env, receiver: Receiver) -> None:
    ctx = env.ctx(public_base_url=receiver.base_url)
    result = await env.adapter.send(_msg(), ctx)
    received = await receiver.wait_for(4)
    events = []
    for item in received:
        request = item.inbound()
        assert RequestValidator(TOKEN).validate(item.url, item.params, request.headers["x-twilio-signature"])
        env.adapter.verify_inbound(request, ctx)
        assert env.adapter.event_id(request) == f"{result.provider_message_id}:{item.params['MessageStatus']}"
        events.extend(env.adapter.parse_inbound(request.body, request.headers))
    assert isinstance(events[0], Ignored)
    updates = [e for e in events if isinstance(e, StatusUpdate)]
    assert [(u.provider_message_id, u.status) for u in updates] == [
        (result.provider_message_id, MessageStatus.SENT),
        (result.provider_message_id, MessageStatus.DELIVERED),
        (result.provider_message_id, MessageStatus.READ),
    ]


async def test_manual_failed_status_reaches_the_adapter(env: Env, receiver: Receiver) -> None:
    env.sandbox.settings.auto_status = False
    ctx = env.ctx(public_base_url=receiver.base_url)
    result = await env.adapter.send(_msg(), ctx)
    async with env.client.post(
        f"{env.base_url}/sandbox/messages/{result.provider_message_id}/status",
        json={"status": "undelivered", "error_code": 30008},
    ) as resp:
        assert resp.status == 200
    (item,) = await receiver.wait_for(1)
    env.adapter.verify_inbound(item.inbound(), ctx)
    (event,) = env.adapter.parse_inbound(item.body, {})
    assert isinstance(event, StatusUpdate)
    assert (event.status, event.error_code) == (MessageStatus.FAILED, "30008")


async def test_inbound_through_the_adapter_and_fetch_media(env: Env, receiver: Receiver) -> None:
    content = bytes(range(256)) * 40
    url = f"{receiver.base_url}/in/twilio/pub_tw"
    async with env.client.post(
        f"{env.base_url}/sandbox/inbound",
        json={
            "account_sid": ACCOUNT,
            "url": url,
            "from": "whatsapp:" + USER,
            "to": WA_FROM,
            "body": "a photo",
            "profile_name": "Ada",
            "media": [{"content_type": "image/jpeg", "content_base64": base64.b64encode(content).decode()}],
        },
    ) as resp:
        sent = await resp.json()
    (item,) = receiver.requests
    ctx = env.ctx()
    request = item.inbound()
    env.adapter.verify_inbound(request, ctx)
    assert env.adapter.event_id(request) == sent["message_sid"]
    assert env.adapter.routing_keys(request.body) == (WA_FROM, None)
    (event,) = env.adapter.parse_inbound(request.body, request.headers)
    assert isinstance(event, ReceivedMessage)
    assert (event.text, event.sender.display_name, event.sender.phone) == ("a photo", "Ada", USER)
    (attachment,) = event.attachments
    assert attachment.kind == "image"
    assert attachment.provider_file_id is not None
    fetched = await env.adapter.fetch_media(attachment.provider_file_id, ctx, max_bytes=1_000_000)
    assert fetched.content == content
    assert fetched.mime_type == "image/jpeg"
    with pytest.raises(PayloadTooLarge):
        await env.adapter.fetch_media(attachment.provider_file_id, ctx, max_bytes=1000)
    with pytest.raises(NotFound):
        await env.adapter.fetch_media(attachment.provider_file_id[:-4] + "0000", ctx, max_bytes=1_000_000)
    with pytest.raises(InvalidInput):
        await env.adapter.fetch_media("https://evil.example/2010-04-01/Accounts/x", ctx, max_bytes=10)
    with pytest.raises(AuthRevoked):
        await env.adapter.fetch_media(
            attachment.provider_file_id, env.ctx(credentials={"auth_token": "wrong"}), max_bytes=1_000_000
        )
    # A tampered inbound body is refused.
    tampered = InboundRequest("POST", request.url, request.headers, request.body.replace(b"photo", b"phot0"))
    with pytest.raises(Exception, match="does not match"):
        env.adapter.verify_inbound(tampered, ctx)


async def test_validate_account(env: Env) -> None:
    info = await env.adapter.validate_account(env.ctx())
    assert info == {
        "account_sid": ACCOUNT,
        "friendly_name": "Chatgate Tests",
        "status": "active",
        "type": "Full",
    }
    with pytest.raises(AuthRevoked, match="refused these credentials"):
        await env.adapter.validate_account(env.ctx(credentials={"auth_token": "wrong"}))
    key_sid, key_secret = env.sandbox.add_api_key(ACCOUNT)
    other = env.sandbox.add_account()
    with pytest.raises(NotFound):
        await env.adapter.validate_account(
            env.ctx(
                config={"account_sid": other.sid, "from": WA_FROM},
                credentials={"api_key_sid": key_sid, "api_key_secret": key_secret},
            )
        )


async def test_faults_map_to_error_types(env: Env) -> None:
    ctx = env.ctx()
    env.sandbox.inject_fault(Fault("rate_limit", retry_after=7))
    with pytest.raises(ProviderRateLimited) as limited:
        await env.adapter.send(_msg(), ctx)
    assert limited.value.retry_after == 7.0
    assert limited.value.details["provider_code"] == "20429"
    assert limited.value.details["bucket"] == f"twilio:ten_tw:{ACCOUNT}:{WA_FROM}"
    env.sandbox.inject_fault(Fault("server_error", status=503))
    with pytest.raises(TransientProviderError) as transient:
        await env.adapter.send(_msg(), ctx)
    assert transient.value.details["provider_code"] == "20503"
    env.sandbox.inject_fault(Fault("unauthorized"))
    with pytest.raises(AuthRevoked):
        await env.adapter.send(_msg(), ctx)
    env.sandbox.inject_fault(
        Fault("error", status=400, code=21610, message="Attempt to send to unsubscribed recipient")
    )
    with pytest.raises(RecipientInvalid) as unsubscribed:
        await env.adapter.send(_msg(), ctx)
    assert unsubscribed.value.details["unreachable"] is True
    result = await env.adapter.send(_msg(), ctx)
    assert result.provider_message_id in env.sandbox.messages
    assert [r.status for r in env.sandbox.requests] == [429, 503, 401, 400, 201]


async def test_real_rules_map_to_error_types(env: Env) -> None:
    ctx = env.ctx(config={"account_sid": ACCOUNT, "from": SMS_FROM})
    with pytest.raises(RecipientInvalid) as invalid:
        await env.adapter.send(_msg(recipient="+12"), ctx)
    assert invalid.value.details["provider_code"] == "21211"
    env.sandbox.accounts[ACCOUNT].opt_outs.add(USER)
    with pytest.raises(RecipientInvalid) as opted_out:
        await env.adapter.send(_msg(), ctx)
    assert opted_out.value.details == {
        **opted_out.value.details,
        "provider_code": "21610",
        "unreachable": True,
    }
    with pytest.raises(PermanentProviderError) as sender:
        await env.adapter.send(_msg(), env.ctx(config={"account_sid": ACCOUNT, "from": "+19999999999"}))
    assert sender.value.details["provider_code"] == "21606"
    with pytest.raises(AuthRevoked):
        await env.adapter.send(_msg(), env.ctx(credentials={"auth_token": "wrong"}))


async def test_slow_api_is_transient(env: Env) -> None:
    impatient = ProviderHttp(timeout=0.3)
    try:
        env.sandbox.inject_fault(Fault("slow", delay=1.0))
        with pytest.raises(TransientProviderError, match="did not answer"):
            await env.adapter.send(_msg(), env.ctx(http=impatient))
    finally:
        await impatient.aclose()


async def test_unreachable_api_is_transient(env: Env) -> None:
    adapter = TwilioAdapter("http://127.0.0.1:9")
    with pytest.raises(TransientProviderError):
        await adapter.send(_msg(), env.ctx())


async def test_upload_without_public_url_is_rejected_before_calling(env: Env) -> None:
    with pytest.raises(ContentRejected, match="public base URL"):
        await env.adapter.send(_msg(attachments=[{"kind": "image", "media_id": "med_1"}]), env.ctx())
    assert env.sandbox.requests == []


def test_sandbox_signature_helper_matches_oracle() -> None:
    params = [("B", "2"), ("A", "1"), ("A", "0"), ("A", "1")]
    url = "https://example.com/in?x=1"
    assert twilio_signature(TOKEN, url, params) == RequestValidator(TOKEN).compute_signature(
        url, MultiDict(params)
    )
