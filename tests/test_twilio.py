"""The Twilio adapter's pure parts: signatures (against twilio-python's RequestValidator as the
oracle and the vendored known-answer vectors), parsing, routing, the create-message form (against
Twilio's OpenAPI description) and error mapping."""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from chatgate.delivery.http import SafeHttpClient
from chatgate.domain.clock import system_clock
from chatgate.domain.errors import (
    AuthRevoked,
    ContentRejected,
    InvalidInput,
    PermanentProviderError,
    ProviderRateLimited,
    RecipientInvalid,
    TransientProviderError,
    Unauthenticated,
)
from chatgate.domain.inbound import Ignored, ReceivedMessage, StatusUpdate
from chatgate.domain.integrations import IntegrationKind
from chatgate.domain.messages import MessageStatus
from chatgate.providers.base import InboundRequest, IntegrationContext, IntegrationRef, OutboundMessage
from chatgate.providers.twilio import outbound, parsing, signature
from chatgate.providers.twilio.adapter import TwilioAdapter
from chatgate.providers.twilio.errors import error_for, retry_after
from chatgate.sandbox.specs import TWILIO_MESSAGES_API
from tests.contracts import TWILIO_SIGNATURES

TOKEN = "f" * 32
ACCOUNT = "AC" + "1" * 32
SERVICE = "MG" + "2" * 32
CONTENT = "HX" + "3" * 32
FORM = "application/x-www-form-urlencoded"


def make_ctx(
    *,
    config: Mapping[str, Any] | None = None,
    credentials: Mapping[str, str] | None = None,
    public_base_url: str | None = None,
) -> IntegrationContext:
    return IntegrationContext(
        IntegrationRef(
            "int_1",
            "ten_1",
            IntegrationKind.TWILIO,
            "pub_1",
            dict(config or {"account_sid": ACCOUNT, "from": "whatsapp:+14155238886"}),
        ),
        dict(credentials or {"auth_token": TOKEN}),
        SafeHttpClient(),
        system_clock,
        public_base_url=public_base_url,
    )


def form_body(params: Mapping[str, str] | list[tuple[str, str]]) -> bytes:
    return urlencode(list(params.items()) if isinstance(params, Mapping) else params).encode()


def signed_request(
    url: str,
    params: Mapping[str, str],
    *,
    token: str = TOKEN,
    signed_url: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> InboundRequest:
    sig = RequestValidator(token).compute_signature(signed_url or url, dict(params))
    return InboundRequest(
        "POST",
        url,
        {"content-type": FORM, "x-twilio-signature": sig, **(headers or {})},
        form_body(params),
    )


# --- signatures: the vendored vectors ---------------------------------------------------------


def _vector_params(vectors: dict[str, Any], case: dict[str, Any]) -> list[tuple[str, str]]:
    if "params_multi" in case:
        return [(n, v) for n, v in case["params_multi"]]
    params = dict(vectors["base_params"])
    params.update(case.get("params_override", {}))
    return list(params.items())


VECTORS = json.loads(TWILIO_SIGNATURES.read_text())


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_signature_vectors(case: dict[str, Any]) -> None:
    token = VECTORS["auth_token"]
    url = case.get("request_url") or case["url"]
    if "expected_signature" in case:
        params = _vector_params(VECTORS, case)
        assert signature.compute_signature(token, url, params) == case["expected_signature"]
        if "string_to_sign" in case:
            assert signature.string_to_sign(url, params) == case["string_to_sign"]
        return
    body = case["raw_body"].encode() if "raw_body" in case else form_body(_vector_params(VECTORS, case))
    content_type = "application/json" if "raw_body" in case else FORM
    if "raw_body" in case:
        assert signature.body_sha256(body) == case["expected_body_sha256_hex"]

    def check() -> None:
        signature.verify(
            secret=token, url=url, body=body, content_type=content_type, signature=case["header_signature"]
        )

    if case["expected_valid"]:
        check()
    else:
        with pytest.raises(Unauthenticated):
            check()


def test_vectors_file_covers_both_outcomes() -> None:
    outcomes = {c.get("expected_valid") for c in VECTORS["cases"] if "header_signature" in c}
    assert outcomes == {True, False}


# --- signatures: generated cases against the oracle ------------------------------------------

_ALPHABET = string.ascii_letters + string.digits + " +&=%?/:;,éü€😀_-.~'\""


def _text(rng: random.Random, low: int = 0, high: int = 12) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(low, high)))


def _random_url(rng: random.Random) -> str:
    scheme = rng.choice(["https", "http"])
    host = rng.choice(["example.com", "chat.example.org", "10.1.2.3", "gw.internal"])
    port = rng.choice(["", "", ":443", ":80", ":8443", ":1234"])
    path = "/" + "/".join(
        rng.choice(["in", "twilio", "pub_x1", "a%20b", "hooks"]) for _ in range(rng.randint(1, 4))
    )
    query = ""
    if rng.random() < 0.5:
        query = "?" + urlencode([(_text(rng, 1, 5), _text(rng)) for _ in range(rng.randint(1, 3))])
    return f"{scheme}://{host}{port}{path}{query}"


def _random_params(rng: random.Random) -> MultiDict[str]:
    params: MultiDict[str] = MultiDict()
    names = ["MessageSid", "Body", "From", "To", "NumMedia", "ProfileName", "X"] + [
        _text(rng, 1, 6) for _ in range(3)
    ]
    for _ in range(rng.randint(0, 9)):
        params.add(rng.choice(names), _text(rng))
    return params


def _pairs(params: MultiDict[str]) -> list[tuple[str, str]]:
    return list(params.items())


CASES = 300


def test_compute_signature_matches_oracle_on_generated_cases() -> None:
    rng = random.Random(20240601)
    for _ in range(CASES):
        token = _text(rng, 8, 40) or "t"
        url, params = _random_url(rng), _random_params(rng)
        expected = RequestValidator(token).compute_signature(url, params)
        assert signature.compute_signature(token, url, _pairs(params)) == expected, (url, params)


def test_verify_agrees_with_oracle_on_generated_cases() -> None:
    """Signed over either port variant, tampered or not, with the right or a wrong token: our
    verdict equals RequestValidator.validate's, and both accept the genuine cases."""
    rng = random.Random(7)
    accepted = rejected = 0
    for index in range(CASES):
        token = _text(rng, 8, 40) or "t"
        url, params = _random_url(rng), _random_params(rng)
        signed_over = rng.choice(signature.url_variants(url))
        sig = RequestValidator(token).compute_signature(signed_over, params)
        body = form_body(_pairs(params))
        mutation = index % 4
        check_token, check_url, check_body, check_params = token, url, body, params
        if mutation == 1:  # a tampered parameter
            check_params = params.copy()
            check_params.add("Injected", "1")
            check_body = form_body(_pairs(check_params))
        elif mutation == 2:  # a tampered URL
            check_url = url.replace("://", "://evil.", 1)
        elif mutation == 3:  # the wrong token
            check_token = token + "x"
        oracle = RequestValidator(check_token).validate(check_url, check_params, sig)
        try:
            signature.verify(
                secret=check_token, url=check_url, body=check_body, content_type=FORM, signature=sig
            )
            ours = True
        except Unauthenticated:
            ours = False
        assert ours == oracle, (mutation, check_url, params)
        assert ours == (mutation == 0)
        accepted += ours
        rejected += not ours
    assert accepted
    assert rejected


def test_port_variants_accepted_both_ways() -> None:
    params = {"MessageSid": "SM1", "Body": "hi"}
    for signed, received in [
        ("https://example.com/in/twilio/p", "https://example.com:443/in/twilio/p"),
        ("https://example.com:443/in/twilio/p", "https://example.com/in/twilio/p"),
        ("http://example.com:80/in/twilio/p", "http://example.com/in/twilio/p"),
    ]:
        sig = RequestValidator(TOKEN).compute_signature(signed, params)
        assert RequestValidator(TOKEN).validate(received, params, sig)
        assert signature.is_valid(TOKEN, received, list(params.items()), sig)
    sig = RequestValidator(TOKEN).compute_signature("https://example.com:444/in/twilio/p", params)
    assert not signature.is_valid(TOKEN, "https://example.com:443/in/twilio/p", list(params.items()), sig)
    assert not RequestValidator(TOKEN).validate("https://example.com:443/in/twilio/p", params, sig)


def test_body_sha256_variant_against_oracle() -> None:
    rng = random.Random(3)
    for _ in range(50):
        raw = json.dumps({"event": _text(rng), "n": rng.randint(0, 10**6)})
        digest = hashlib.sha256(raw.encode()).hexdigest()
        url = f"https://example.com/in/twilio/p?x={rng.randint(0, 9)}&bodySHA256={digest}"
        sig = RequestValidator(TOKEN).compute_signature(url, {})
        assert RequestValidator(TOKEN).validate(url, raw, sig)
        signature.verify(
            secret=TOKEN, url=url, body=raw.encode(), content_type="application/json", signature=sig
        )
        tampered = raw + " "
        assert not RequestValidator(TOKEN).validate(url, tampered, sig)
        with pytest.raises(Unauthenticated, match="bodySHA256"):
            signature.verify(
                secret=TOKEN, url=url, body=tampered.encode(), content_type="application/json", signature=sig
            )


def test_json_body_without_body_hash_is_refused() -> None:
    url = "https://example.com/in/twilio/p"
    sig = RequestValidator(TOKEN).compute_signature(url, {})
    with pytest.raises(Unauthenticated, match="bodySHA256"):
        signature.verify(
            secret=TOKEN, url=url, body=b'{"a":1}', content_type="application/json", signature=sig
        )


def test_sha256_shared_key_variant() -> None:
    secret = "shared-key-secret"
    url = "https://example.com/in/twilio/pub_1"
    params = {"MessageSid": "SM9", "MessageStatus": "delivered"}
    sig = RequestValidator(secret).compute_signature(url, params, algorithm="HMAC_SHA256")
    request = InboundRequest(
        "POST",
        url,
        {
            "content-type": FORM,
            "x-twilio-signature": sig,
            "x-twilio-webhooks-signature-settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
        },
        form_body(params),
    )
    adapter = TwilioAdapter()
    with pytest.raises(Unauthenticated, match="webhook_signing_secret"):
        adapter.verify_inbound(request, make_ctx())
    adapter.verify_inbound(
        request, make_ctx(credentials={"auth_token": TOKEN, "webhook_signing_secret": secret})
    )
    with pytest.raises(Unauthenticated):
        adapter.verify_inbound(
            request, make_ctx(credentials={"auth_token": TOKEN, "webhook_signing_secret": secret + "x"})
        )


# --- verify_inbound: the public URL ----------------------------------------------------------

PARAMS = {"MessageSid": "SM" + "a" * 32, "SmsStatus": "received", "Body": "hello", "From": "+15551234567"}


def test_verify_inbound_accepts_and_refuses() -> None:
    adapter = TwilioAdapter()
    url = "https://gw.example.com/in/twilio/pub_1?x=1"
    request = signed_request(url, PARAMS)
    adapter.verify_inbound(request, make_ctx())
    assert RequestValidator(TOKEN).validate(url, PARAMS, request.headers["x-twilio-signature"])
    tampered = InboundRequest("POST", url, request.headers, form_body({**PARAMS, "Body": "HELLO"}))
    with pytest.raises(Unauthenticated, match="does not match"):
        adapter.verify_inbound(tampered, make_ctx())
    other_path = InboundRequest("POST", url.replace("pub_1", "pub_2"), request.headers, request.body)
    with pytest.raises(Unauthenticated):
        adapter.verify_inbound(other_path, make_ctx())
    with pytest.raises(Unauthenticated):
        adapter.verify_inbound(request, make_ctx(credentials={"auth_token": "wrong"}))


def test_verify_inbound_fails_closed() -> None:
    adapter = TwilioAdapter()
    url = "https://gw.example.com/in/twilio/pub_1"
    request = signed_request(url, PARAMS)
    unsigned = InboundRequest("POST", url, {"content-type": FORM}, request.body)
    with pytest.raises(Unauthenticated, match="header is missing"):
        adapter.verify_inbound(unsigned, make_ctx())
    api_key_only = {"api_key_sid": "SK" + "0" * 32, "api_key_secret": "s"}
    with pytest.raises(Unauthenticated, match="Auth Token even when"):
        adapter.verify_inbound(request, make_ctx(credentials=api_key_only))
    empty = InboundRequest("POST", url, {"content-type": FORM, "x-twilio-signature": ""}, request.body)
    with pytest.raises(Unauthenticated):
        adapter.verify_inbound(empty, make_ctx())


def test_verify_inbound_with_api_key_still_uses_auth_token() -> None:
    request = signed_request("https://gw.example.com/in/twilio/pub_1", PARAMS)
    credentials = {"auth_token": TOKEN, "api_key_sid": "SK" + "0" * 32, "api_key_secret": "secret"}
    TwilioAdapter().verify_inbound(request, make_ctx(credentials=credentials))


def test_previous_auth_token_accepted_during_rotation() -> None:
    request = signed_request("https://gw.example.com/in/twilio/pub_1", PARAMS, token="old-token")
    TwilioAdapter().verify_inbound(
        request, make_ctx(credentials={"auth_token": TOKEN, "auth_token_previous": "old-token"})
    )
    with pytest.raises(Unauthenticated):
        TwilioAdapter().verify_inbound(request, make_ctx())


def test_behind_a_proxy_uses_forwarded_headers() -> None:
    public = "https://chat.example.com/in/twilio/pub_1?a=1"
    internal = "http://10.0.0.5:8000/in/twilio/pub_1?a=1"
    headers = {"x-forwarded-proto": "https, http", "x-forwarded-host": "chat.example.com, lb.internal"}
    request = signed_request(internal, PARAMS, signed_url=public, headers=headers)
    assert signature.public_url(internal, headers, None) == public
    TwilioAdapter().verify_inbound(request, make_ctx())
    bare = InboundRequest(
        "POST", internal, {k: v for k, v in request.headers.items() if "forwarded" not in k}, request.body
    )
    with pytest.raises(Unauthenticated):
        TwilioAdapter().verify_inbound(bare, make_ctx())


def test_configured_public_base_url_wins_and_keeps_its_prefix() -> None:
    base = "https://example.com/gateway/"
    public = "https://example.com/gateway/in/twilio/pub_1"
    for internal in (
        "http://127.0.0.1:8000/in/twilio/pub_1",
        "http://127.0.0.1:8000/gateway/in/twilio/pub_1",
    ):
        assert signature.public_url(internal, {}, base) == public
        spoofed = {"x-forwarded-host": "evil.example"}
        request = signed_request(internal, PARAMS, signed_url=public, headers=spoofed)
        TwilioAdapter().verify_inbound(request, make_ctx(public_base_url=base))
        assert RequestValidator(TOKEN).validate(public, PARAMS, request.headers["x-twilio-signature"])
    with pytest.raises(Unauthenticated):
        TwilioAdapter().verify_inbound(
            signed_request("http://127.0.0.1:8000/in/twilio/pub_1", PARAMS, signed_url=public),
            make_ctx(public_base_url="https://example.com"),
        )


def test_public_url_without_anything_is_the_request_url() -> None:
    url = "http://127.0.0.1:9000/in/twilio/p?x=%20y"
    assert signature.public_url(url, {}, None) == url


# --- event ids, routing and parsing ------------------------------------------------------------


def _request(params: Mapping[str, str] | list[tuple[str, str]]) -> InboundRequest:
    return InboundRequest("POST", "https://x/in/twilio/p", {"content-type": FORM}, form_body(params))


def test_event_ids() -> None:
    adapter = TwilioAdapter()
    sid = "SM" + "b" * 32
    assert adapter.event_id(_request({"MessageSid": sid, "SmsStatus": "received", "Body": "x"})) == sid
    assert adapter.event_id(_request({"MessageSid": sid, "MessageStatus": "delivered"})) == f"{sid}:delivered"
    assert adapter.event_id(_request({"SmsSid": sid, "SmsStatus": "sent"})) == f"{sid}:sent"
    with pytest.raises(InvalidInput, match="MessageSid"):
        adapter.event_id(_request({"Body": "x"}))
    with pytest.raises(InvalidInput):
        adapter.event_id(_request({"MessageSid": sid}))


def test_routing_keys() -> None:
    body = form_body({"MessageSid": "SM1", "To": "whatsapp:+14155238886", "MessagingServiceSid": SERVICE})
    assert parsing.routing_keys(body) == ("whatsapp:+14155238886", SERVICE)
    assert TwilioAdapter.routing_keys(form_body({"To": "+15550001111"})) == ("+15550001111", None)
    assert parsing.routing_keys(b"\xff\xfe") == (None, None)


WHATSAPP_TEXT = {
    "SmsMessageSid": "SM" + "c" * 32,
    "NumMedia": "0",
    "ProfileName": "Ada Lovelace",
    "MessageType": "text",
    "SmsSid": "SM" + "c" * 32,
    "WaId": "15551234567",
    "SmsStatus": "received",
    "Body": "Hello there",
    "To": "whatsapp:+14155238886",
    "NumSegments": "1",
    "ReferralNumMedia": "0",
    "MessageSid": "SM" + "c" * 32,
    "AccountSid": ACCOUNT,
    "From": "whatsapp:+15551234567",
    "ApiVersion": "2010-04-01",
}


def test_parse_whatsapp_text_with_profile_name() -> None:
    (event,) = TwilioAdapter().parse_inbound(form_body(WHATSAPP_TEXT), {})
    assert isinstance(event, ReceivedMessage)
    assert event.provider_message_id == "SM" + "c" * 32
    assert event.chat.external_id == "whatsapp:+15551234567"
    assert event.sender.address == "whatsapp:+15551234567"
    assert event.sender.display_name == "Ada Lovelace"
    assert event.sender.phone == "+15551234567"
    assert event.text == "Hello there"
    assert event.attachments == ()
    assert event.extra["wa_id"] == "15551234567"
    assert event.extra["to"] == "whatsapp:+14155238886"
    assert event.extra["channel"] == "whatsapp"


def test_parse_sms_with_media() -> None:
    params = {
        "MessageSid": "MM" + "d" * 32,
        "SmsStatus": "received",
        "From": "+15557654321",
        "To": "+15550001111",
        "Body": "",
        "NumMedia": "2",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        "MediaContentType0": "image/jpeg",
        "MediaUrl1": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2",
        "MediaContentType1": "application/pdf",
    }
    (event,) = parsing.parse(form_body(params))
    assert isinstance(event, ReceivedMessage)
    assert event.text is None
    assert event.sender.phone == "+15557654321"
    assert event.extra["channel"] == "sms"
    assert [(a.kind, a.mime_type, a.provider_file_id) for a in event.attachments] == [
        ("image", "image/jpeg", params["MediaUrl0"]),
        ("document", "application/pdf", params["MediaUrl1"]),
    ]
    with pytest.raises(InvalidInput, match="MediaUrl1"):
        parsing.parse(form_body({k: v for k, v in params.items() if k != "MediaUrl1"}))


@pytest.mark.parametrize(
    ("mime", "kind"),
    [
        ("image/png", "image"),
        ("video/mp4", "video"),
        ("audio/ogg", "audio"),
        ("text/vcard", "contact"),
        (None, "document"),
    ],
)
def test_attachment_kinds(mime: str | None, kind: str) -> None:
    assert parsing.kind_of(mime) == kind


def test_parse_location_button_and_reply() -> None:
    params = {
        **WHATSAPP_TEXT,
        "Body": "",
        "Latitude": "52.5200",
        "Longitude": "13.4050",
        "Address": "Berlin",
        "Label": "Office",
        "ButtonPayload": "yes-please",
        "ButtonText": "Yes",
        "OriginalRepliedMessageSid": "SM" + "e" * 32,
    }
    (event,) = parsing.parse(form_body(params))
    assert isinstance(event, ReceivedMessage)
    (location,) = event.attachments
    assert location.kind == "location"
    assert location.extra == {"latitude": 52.52, "longitude": 13.405, "address": "Berlin", "label": "Office"}
    assert event.reply_to_provider_id == "SM" + "e" * 32
    assert event.extra["button_payload"] == "yes-please"
    assert event.extra["button_text"] == "Yes"
    with pytest.raises(InvalidInput):
        parsing.parse(form_body({**params, "Latitude": "north"}))


def _status(status: str, **extra: str) -> bytes:
    return form_body(
        {
            "SmsSid": "SM" + "f" * 32,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": "whatsapp:+15551234567",
            "MessageSid": "SM" + "f" * 32,
            "AccountSid": ACCOUNT,
            "From": "whatsapp:+14155238886",
            "ApiVersion": "2010-04-01",
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("sent", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("read", MessageStatus.READ),
        ("failed", MessageStatus.FAILED),
        ("undelivered", MessageStatus.FAILED),
    ],
)
def test_status_callbacks(status: str, expected: MessageStatus) -> None:
    extra = (
        {"ErrorCode": "30003", "ErrorMessage": "Unreachable destination handset"}
        if expected is MessageStatus.FAILED
        else {}
    )
    (event,) = parsing.parse(_status(status, **extra))
    assert isinstance(event, StatusUpdate)
    assert event.provider_message_id == "SM" + "f" * 32
    assert event.status is expected
    if extra:
        assert (event.error_code, event.error_message) == ("30003", "Unreachable destination handset")
    else:
        assert event.error_code is None


@pytest.mark.parametrize("status", ["queued", "sending", "accepted", "scheduled", "partially_delivered"])
def test_statuses_that_add_nothing_are_ignored(status: str) -> None:
    (event,) = parsing.parse(_status(status))
    assert isinstance(event, Ignored)
    assert status in event.reason


def test_status_callback_with_only_message_status_and_no_body() -> None:
    body = form_body({"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+1555", "From": "+1666"})
    (event,) = parsing.parse(body)
    assert isinstance(event, StatusUpdate)
    assert event.status is MessageStatus.DELIVERED


def test_unparseable_bodies() -> None:
    with pytest.raises(InvalidInput):
        parsing.parse(b"\xff\xfe")
    with pytest.raises(InvalidInput):
        parsing.parse(form_body({"SmsStatus": "received", "Body": "no sid"}))
    with pytest.raises(InvalidInput, match="From"):
        parsing.parse(form_body({"MessageSid": "SM1", "SmsStatus": "received", "Body": "no sender"}))


# --- the create-message form against Twilio's OpenAPI description ----------------------------

SPEC = json.loads(TWILIO_MESSAGES_API.read_text())
CREATE_SCHEMA = SPEC["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]["requestBody"][
    "content"
][FORM]["schema"]


def _message(**kwargs: Any) -> OutboundMessage:
    values: dict[str, Any] = {"message_id": "msg_1", "recipient": "+15551234567", "text": "hi"}
    values.update(kwargs)
    return OutboundMessage(**values)


def _check_against_spec(form: list[tuple[str, str]]) -> None:
    assert CREATE_SCHEMA["title"] == "CreateMessageRequest"
    properties = CREATE_SCHEMA["properties"]
    names = [name for name, _ in form]
    for name in names:
        assert name in properties, f"{name} is not a CreateMessageRequest field"
        if properties[name].get("type") != "array":
            assert names.count(name) == 1, f"{name} is not repeatable"
    for name in CREATE_SCHEMA.get("required", []):
        assert name in names
    assert "From" in names or "MessagingServiceSid" in names
    assert {"Body", "MediaUrl", "ContentSid"} & set(names)
    for name, value in form:
        pattern = properties[name].get("pattern")
        if pattern:
            assert re.match(pattern, value), (name, value)


WA = outbound.Sender(ACCOUNT, "whatsapp:+14155238886", None, "whatsapp")
SMS = outbound.Sender(ACCOUNT, "+15550001111", None, "sms")
SVC = outbound.Sender(ACCOUNT, None, SERVICE, "sms")


def test_form_text_whatsapp_adds_prefix_and_callback() -> None:
    form = outbound.message_form(_message(), WA, status_callback="https://gw.example/in/twilio/pub_1")
    _check_against_spec(form)
    assert form == [
        ("To", "whatsapp:+15551234567"),
        ("From", "whatsapp:+14155238886"),
        ("Body", "hi"),
        ("StatusCallback", "https://gw.example/in/twilio/pub_1"),
    ]
    already = outbound.message_form(_message(recipient="whatsapp:+15551234567"), WA)
    assert dict(already)["To"] == "whatsapp:+15551234567"


def test_form_sms_media_and_uploads() -> None:
    attachments = [
        {"kind": "image", "url": "https://cdn.example/a.png"},
        {"kind": "document", "media_id": "med_1", "mime_type": "application/pdf"},
    ]
    form = outbound.message_form(
        _message(text=None, attachments=attachments), SMS, public_base_url="https://gw.example/"
    )
    _check_against_spec(form)
    assert [v for n, v in form if n == "MediaUrl"] == [
        "https://cdn.example/a.png",
        "https://gw.example/v1/media/med_1",
    ]
    assert "Body" not in dict(form)
    with pytest.raises(ContentRejected, match="public base URL"):
        outbound.message_form(_message(attachments=attachments), SMS)
    with pytest.raises(ContentRejected, match="at most 1"):
        outbound.message_form(_message(attachments=attachments), WA, public_base_url="https://gw.example")


def test_form_template_and_messaging_service() -> None:
    template = {"content_sid": CONTENT, "variables": {"1": "Ada", "2": 3}}
    form = outbound.message_form(_message(text="ignored", template=template), SVC)
    _check_against_spec(form)
    values = dict(form)
    assert values["MessagingServiceSid"] == SERVICE
    assert "From" not in values
    assert values["ContentSid"] == CONTENT
    assert json.loads(values["ContentVariables"]) == {"1": "Ada", "2": "3"}
    assert "Body" not in values
    with pytest.raises(ContentRejected, match="HX"):
        outbound.message_form(_message(template={"content_sid": "nope"}), SVC)


def test_form_options_are_spec_fields() -> None:
    assert set(outbound.OPTION_FIELDS.values()) <= set(CREATE_SCHEMA["properties"])
    form = outbound.message_form(
        _message(
            options={
                "validity_period": 600,
                "shorten_urls": True,
                "persistent_action": ["a", "b"],
                "parse_mode": "x",
            }
        ),
        SMS,
    )
    _check_against_spec(form)
    assert ("ValidityPeriod", "600") in form
    assert ("ShortenUrls", "true") in form
    assert [v for n, v in form if n == "PersistentAction"] == ["a", "b"]


def test_form_refuses_what_twilio_cannot_carry() -> None:
    with pytest.raises(ContentRejected, match="1600"):
        outbound.message_form(_message(text="x" * 1601), SMS)
    with pytest.raises(ContentRejected, match="template"):
        outbound.message_form(_message(buttons=[[{"text": "ok", "callback_data": "1"}]]), WA)
    with pytest.raises(ContentRejected, match="no text"):
        outbound.message_form(_message(text=None), SMS)
    with pytest.raises(ContentRejected, match="location"):
        outbound.message_form(_message(attachments=[{"kind": "location"}]), SMS)
    with pytest.raises(RecipientInvalid):
        outbound.message_form(_message(recipient="whatsapp:+15551234567"), SMS)


def test_sender_from_config() -> None:
    sender = outbound.sender_from_config(
        {"account_sid": ACCOUNT, "from": "+14155238886", "channel": "whatsapp"}
    )
    assert sender.from_address == "whatsapp:+14155238886"
    assert sender.channel == "whatsapp"
    assert (
        outbound.sender_from_config({"account_sid": ACCOUNT, "from": "whatsapp:+1415"}).channel == "whatsapp"
    )
    assert (
        outbound.sender_from_config({"account_sid": ACCOUNT, "messaging_service_sid": SERVICE}).channel
        == "sms"
    )
    for config in (
        {"from": "+1415"},
        {"account_sid": ACCOUNT},
        {"account_sid": ACCOUNT, "from": "+1", "channel": "fax"},
        {"account_sid": ACCOUNT, "messaging_service_sid": "MG1"},
    ):
        with pytest.raises(PermanentProviderError):
            outbound.sender_from_config(config)


def test_send_buckets() -> None:
    adapter = TwilioAdapter()
    ctx = make_ctx(config={"account_sid": ACCOUNT, "from": "+15550001111", "rate_limit_per_second": 20})
    (text,) = adapter.send_buckets(_message(), ctx)
    assert text.key == f"twilio:ten_1:{ACCOUNT}:+15550001111"
    assert text.limit.rate == 20
    media, text2 = adapter.send_buckets(
        _message(attachments=[{"kind": "image", "url": "https://x/a.png"}]), ctx
    )
    assert text2 == text
    assert media.key == text.key + ":media"
    assert media.limit.rate == 1.0
    broken = make_ctx(config={"from": "+1"})
    (fallback,) = adapter.send_buckets(_message(), broken)
    assert fallback.key == "twilio:ten_1:integration:int_1"
    assert fallback.limit.rate == 10.0


# --- error mapping ------------------------------------------------------------------------------


def _twilio_error(code: int, status: int = 400, message: str = "boom") -> bytes:
    return json.dumps(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
    ).encode()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, 63016, PermanentProviderError),
        (400, 21211, RecipientInvalid),
        (400, 21614, RecipientInvalid),
        (400, 21610, RecipientInvalid),
        (401, 20003, AuthRevoked),
        (400, 21408, PermanentProviderError),
        (400, 21606, PermanentProviderError),
        (400, 21617, ContentRejected),
        (500, 20500, TransientProviderError),
        (503, 20503, TransientProviderError),
        (404, 20404, PermanentProviderError),
    ],
)
def test_error_mapping(status: int, code: int, expected: type[Exception]) -> None:
    error = error_for(status, {}, _twilio_error(code, status))
    assert type(error) is expected
    assert error.details["provider_code"] == str(code)
    assert error.details["more_info"].endswith(str(code))


def test_error_mapping_specifics() -> None:
    window = error_for(400, {}, _twilio_error(63016))
    assert "template" in window.message
    assert "24 hours" in window.message
    unsubscribed = error_for(400, {}, _twilio_error(21610))
    assert unsubscribed.details["unreachable"] is True
    assert "unreachable" not in error_for(400, {}, _twilio_error(21211)).details
    limited = error_for(429, {"Retry-After": "7"}, _twilio_error(20429, 429))
    assert isinstance(limited, ProviderRateLimited)
    assert limited.retry_after == 7.0
    assert limited.details["provider_code"] == "20429"
    by_code = error_for(400, {}, _twilio_error(20429))
    assert isinstance(by_code, ProviderRateLimited)
    assert by_code.retry_after == 1.0
    bare = error_for(502, {}, b"<html>bad gateway</html>")
    assert isinstance(bare, TransientProviderError)
    assert bare.details["provider_code"] == "502"
    assert isinstance(error_for(401, {}, b""), AuthRevoked)


def test_retry_after_formats() -> None:
    from datetime import UTC, datetime

    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after({"retry-after": "2.5"}) == 2.5
    assert retry_after({"retry-after": "Mon, 01 Jan 2024 12:00:30 GMT"}, now=now) == 30.0
    assert retry_after({"retry-after": "soon"}) == 1.0
    assert retry_after({}) == 1.0
