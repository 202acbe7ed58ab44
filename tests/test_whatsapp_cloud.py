"""The WhatsApp Cloud API adapter, offline: fixtures, signatures, body builders vs Meta's spec, errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from chatgate.delivery.http import SafeHttpClient
from chatgate.domain.clock import system_clock
from chatgate.domain.errors import (
    AuthRevoked,
    ContentRejected,
    InvalidInput,
    PermanentProviderError,
    PermissionDenied,
    ProviderRateLimited,
    RecipientInvalid,
    TransientProviderError,
    Unauthenticated,
)
from chatgate.domain.inbound import Ignored, ProviderEvent, Reaction, ReceivedMessage, StatusUpdate
from chatgate.domain.integrations import IntegrationKind
from chatgate.domain.messages import ConversationKind, MessageStatus
from chatgate.providers.base import InboundRequest, IntegrationContext, IntegrationRef, OutboundMessage
from chatgate.providers.whatsapp_cloud import outbound
from chatgate.providers.whatsapp_cloud.adapter import WhatsAppCloudAdapter
from chatgate.providers.whatsapp_cloud.errors import graph_error
from chatgate.providers.whatsapp_cloud.routing import event_key, phone_number_ids, split_by_phone_number
from chatgate.providers.whatsapp_cloud.signature import sign, verify_signature, verify_subscription
from chatgate.ratelimit.base import paced
from chatgate.sandbox.graph_api import spec
from tests.contracts import WHATSAPP_SECURITY, WHATSAPP_WEBHOOKS

SECRET = "test_app_secret_0123456789abcdef"
ADAPTER = WhatsAppCloudAdapter()


def fixture_cases() -> list[tuple[str, str, dict[str, Any]]]:
    cases = []
    for path in sorted(WHATSAPP_WEBHOOKS.glob("*.json")):
        for name, body in json.loads(path.read_text()).items():
            cases.append((path.stem, name, body))
    return cases


FIXTURES = fixture_cases()


def case(file: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((WHATSAPP_WEBHOOKS / f"{file}.json").read_text())[name]
    return body


def raw(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body).encode()


def ctx(
    config: Mapping[str, Any] | None = None, credentials: Mapping[str, str] | None = None
) -> IntegrationContext:
    return IntegrationContext(
        IntegrationRef(
            "int_wa",
            "ten_1",
            IntegrationKind.WHATSAPP_CLOUD,
            "pub_wa",
            dict({"phone_number_id": "1122"} if config is None else config),
        ),
        dict(
            {"app_secret": SECRET, "verify_token": "my-verify-token", "access_token": "tok"}
            if credentials is None
            else credentials
        ),
        SafeHttpClient(),
        system_clock,
    )


def message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {"message_id": "msg_1", "recipient": "15551234567", "text": None}
    values.update(fields)
    return OutboundMessage(**values)


# Every fixture parses, with content checked against the fixture's own JSON


def _ts(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


def _check_message(event: ProviderEvent, item: dict[str, Any], contacts: dict[str, Any]) -> None:
    kind = item.get("type")
    content = item.get(kind) if isinstance(kind, str) else None
    ignored_kinds = {"system", "unsupported", "edit", "revoke"}
    if kind in ignored_kinds or (
        kind == "interactive" and (not content or content.get("type") == "call_permission_reply")
    ):
        assert isinstance(event, Ignored), (kind, event)
        assert event.reason
        return
    if kind == "reaction":
        assert isinstance(event, Reaction)
        assert event.provider_message_id == item["reaction"]["message_id"]
        assert event.emoji == item["reaction"].get("emoji", "")
        assert event.sender.address == item["from"]
        assert event.at == _ts(item["timestamp"])
        return
    assert isinstance(event, ReceivedMessage), (kind, event)
    assert event.provider_message_id == item["id"]
    assert event.sender.address == item["from"]
    assert event.chat.external_id == item["from"]
    assert event.chat.kind == ConversationKind.PRIVATE
    assert event.sent_at == _ts(item["timestamp"])
    assert event.reply_to_provider_id == (item.get("context") or {}).get("id")
    profile = (contacts.get(item["from"]) or {}).get("profile") or {}
    assert event.sender.display_name == profile.get("name")
    if str(item["from"]).isdigit():
        assert event.sender.phone == "+" + item["from"]
    for flag in ("forwarded", "frequently_forwarded"):
        assert event.extra.get(flag, False) == bool((item.get("context") or {}).get(flag))
    assert content is not None or kind == "contacts"
    if kind == "text":
        assert event.text == item["text"]["body"]
    elif kind in ("image", "video", "audio", "document", "sticker"):
        assert content is not None
        (attachment,) = event.attachments
        assert attachment.provider_file_id == content["id"]
        assert attachment.mime_type == content["mime_type"]
        assert attachment.extra["sha256"] == content["sha256"]
        assert attachment.file_name == content.get("filename")
        assert event.text == content.get("caption")
        assert attachment.kind == ("voice" if content.get("voice") else kind)
        assert attachment.url is None  # Meta's lookaside URLs need the token: fetched via fetch_media
    elif kind == "location":
        assert content is not None
        (attachment,) = event.attachments
        assert attachment.kind == "location"
        assert {k: attachment.extra[k] for k in content} == content
    elif kind == "contacts":
        assert [a.kind for a in event.attachments] == ["contact"] * len(item["contacts"])
        assert [a.extra["contact"] for a in event.attachments] == item["contacts"]
    elif kind == "interactive":
        assert content is not None
        reply = content[content["type"]]
        if content["type"] == "nfm_reply":
            assert event.text == reply["body"]
            assert event.extra["reply"]["response"] == json.loads(reply["response_json"])
        else:
            assert event.text == reply["title"]
            assert event.extra["reply"]["id"] == reply["id"]
            assert event.extra["reply"]["type"] == content["type"]
    elif kind == "button":
        assert content is not None
        assert event.text == content["text"]
        assert event.extra["reply"] == {"type": "button", "id": content["payload"], "title": content["text"]}
    elif kind == "order":
        assert content is not None
        assert event.extra["order"] == content
    else:
        pytest.fail(f"no expectation for message type {kind}")


def _check_status(event: ProviderEvent, item: dict[str, Any]) -> None:
    if item["status"] not in ("sent", "delivered", "read", "failed"):
        assert isinstance(event, Ignored)
        assert item["status"] in event.reason
        return
    assert isinstance(event, StatusUpdate)
    assert event.provider_message_id == item["id"]
    assert event.status == MessageStatus(item["status"])
    assert event.at == _ts(item["timestamp"])
    errors = item.get("errors") or []
    if errors:
        assert event.error_code == str(errors[0]["code"])
        assert event.error_message is not None
        assert errors[0]["title"] in event.error_message
        assert errors[0]["error_data"]["details"] in event.error_message
    else:
        assert event.error_code is None
        assert event.error_message is None


def test_the_fixture_directory_is_not_empty() -> None:
    assert len({file for file, _, _ in FIXTURES}) == 19
    assert len(FIXTURES) == 74


@pytest.mark.parametrize(("file", "name", "body"), FIXTURES, ids=[f"{f}/{n}" for f, n, _ in FIXTURES])
def test_every_fixture_normalises(file: str, name: str, body: dict[str, Any]) -> None:
    events = ADAPTER.parse_inbound(raw(body), {})
    expected: list[tuple[str, Any, Any]] = []
    for entry in body["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            if change["field"] != "messages":
                expected.append(("ignored-field", change["field"], None))
                continue
            contacts = {c["wa_id"]: c for c in value.get("contacts", [])}
            expected += [("message", m, contacts) for m in value.get("messages", [])]
            expected += [("status", s, None) for s in value.get("statuses", [])]
    assert len(events) == len(expected)
    for event, (what, item, contacts) in zip(events, expected, strict=True):
        if what == "ignored-field":
            assert isinstance(event, Ignored)
            assert f"'{item}'" in event.reason
        elif what == "message":
            _check_message(event, item, contacts)
        else:
            _check_status(event, item)


def test_specific_normalisations() -> None:
    (voice,) = ADAPTER.parse_inbound(raw(case("message", "voice")), {})
    assert isinstance(voice, ReceivedMessage)
    assert voice.attachments[0].kind == "voice"
    (sticker,) = ADAPTER.parse_inbound(raw(case("message", "animated_sticker")), {})
    assert isinstance(sticker, ReceivedMessage)
    assert sticker.attachments[0].extra["animated"] is True
    (removed,) = ADAPTER.parse_inbound(raw(case("message", "unreaction_no_emoji")), {})
    assert isinstance(removed, Reaction)
    assert removed.emoji == ""
    (failed,) = ADAPTER.parse_inbound(raw(case("message_status", "failed")), {})
    assert isinstance(failed, StatusUpdate)
    assert failed.status == MessageStatus.FAILED
    assert failed.error_code == "130472"
    assert failed.error_message == (
        "User's number is part of an experiment: Failed to send message because this user's phone number is part "
        "of an experiment"
    )
    (listed,) = ADAPTER.parse_inbound(raw(case("callback_selection", "description")), {})
    assert isinstance(listed, ReceivedMessage)
    assert listed.extra["reply"] == {
        "type": "list_reply",
        "id": "callback_data",
        "title": "title",
        "description": "description",
    }
    assert listed.reply_to_provider_id == "wamid.xyzxyz"
    (document,) = ADAPTER.parse_inbound(raw(case("message", "document")), {})
    assert isinstance(document, ReceivedMessage)
    assert document.attachments[0].file_name == "filename.pdf"
    assert document.text == "caption"
    assert document.extra["forwarded"] is True
    assert document.extra["user_id"] == "US.13491208655302741918"
    (system,) = ADAPTER.parse_inbound(raw(case("system", "phone_number_change")), {})
    assert isinstance(system, Ignored)
    assert "user_changed_number" in system.reason


def test_unparseable_bodies_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        ADAPTER.parse_inbound(b"{nope", {})
    with pytest.raises(InvalidInput, match="JSON object"):
        ADAPTER.parse_inbound(b"[1, 2]", {})
    (event,) = ADAPTER.parse_inbound(b'{"object": "page", "entry": []}', {})
    assert isinstance(event, Ignored)
    (empty,) = ADAPTER.parse_inbound(b'{"object":"whatsapp_business_account","entry":[]}', {})
    assert isinstance(empty, Ignored)


# Signatures and the GET handshake


def security() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(WHATSAPP_SECURITY.read_text())
    return data


VECTORS = security()["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_signature_vectors(vector: dict[str, Any]) -> None:
    body = vector["raw_body"].encode()
    header = vector.get("expected_header") or vector["header"]
    request = InboundRequest("POST", "/wa", {"x-hub-signature-256": header}, body)
    context = ctx(credentials={"app_secret": vector["app_secret"]})
    if vector["expected_valid"]:
        assert sign(vector["app_secret"], body) == vector["expected_header"]
        ADAPTER.verify_inbound(request, context)
    else:
        with pytest.raises(Unauthenticated):
            ADAPTER.verify_inbound(request, context)


def test_signature_fails_closed() -> None:
    body = raw(case("message", "text"))
    good = sign(SECRET, body)
    verify_signature(SECRET, body, good)
    verify_signature(SECRET, body, good.upper().replace("SHA256=", "sha256="))  # hex case does not matter
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(Unauthenticated, match="does not match"):
        verify_signature(SECRET, bytes(flipped), good)
    with pytest.raises(Unauthenticated, match="does not match"):
        verify_signature("another secret", body, good)
    with pytest.raises(Unauthenticated, match="missing"):
        verify_signature(SECRET, body, None)
    with pytest.raises(Unauthenticated, match="sha256=<64 hex"):
        verify_signature(SECRET, body, "sha256=abc")
    with pytest.raises(Unauthenticated, match="sha256=<64 hex"):
        verify_signature(SECRET, body, "sha1=" + good[7:])
    with pytest.raises(Unauthenticated, match="no app_secret"):
        ADAPTER.verify_inbound(
            InboundRequest("POST", "/", {"x-hub-signature-256": good}, body), ctx(credentials={})
        )


def test_subscription_handshake() -> None:
    handshake = security()["verification_handshake"]
    query = handshake["example_request_query"]
    token = query["hub.verify_token"]
    assert verify_subscription(query, token) == handshake["expected_response"]["body"]
    assert ADAPTER.verify_subscription(query, ctx()) == "1158201444"
    with pytest.raises(PermissionDenied, match="does not match"):
        verify_subscription({**query, "hub.verify_token": "wrong"}, token)
    with pytest.raises(PermissionDenied, match="subscribe"):
        verify_subscription({**query, "hub.mode": "unsubscribe"}, token)
    with pytest.raises(PermissionDenied, match="no verify_token"):
        verify_subscription(query, "")
    with pytest.raises(PermissionDenied, match="challenge"):
        verify_subscription({k: v for k, v in query.items() if k != "hub.challenge"}, token)


# Routing helpers and the dedupe key


def two_numbers_body() -> dict[str, Any]:
    text = case("message", "text")
    status = case("message_status", "sent")
    status["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "2233"
    account = case("account_update", "account_deleted")
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "WABA1", "changes": [text["entry"][0]["changes"][0], status["entry"][0]["changes"][0]]},
            account["entry"][0],
        ],
    }


def test_phone_number_ids_and_split() -> None:
    body = raw(two_numbers_body())
    assert phone_number_ids(body) == ["1122334455667", "2233"]
    assert WhatsAppCloudAdapter.phone_number_ids(body) == ["1122334455667", "2233"]
    parts = split_by_phone_number(body)
    assert sorted(parts) == ["1122334455667", "2233", "waba:102290129340398"]
    (text,) = ADAPTER.parse_inbound(parts["1122334455667"], {})
    assert isinstance(text, ReceivedMessage)
    assert text.text == "Body Text"
    (status,) = ADAPTER.parse_inbound(parts["2233"], {})
    assert isinstance(status, StatusUpdate)
    assert status.status == MessageStatus.SENT
    for key, part in parts.items():
        payload = json.loads(part)
        assert payload["object"] == "whatsapp_business_account"
        assert phone_number_ids(part) == ([] if key.startswith("waba:") else [key])
        assert payload["entry"][0]["id"] in ("WABA1", "102290129340398")
    single = raw(case("message", "image"))
    assert split_by_phone_number(single) == {"1122334455667": single}


def test_event_id_is_stable_and_content_based() -> None:
    body = case("message_status", "delivered")
    first = ADAPTER.event_id(InboundRequest("POST", "/", {}, raw(body)))
    assert first == "wa:s:wamid.xyzxyz:delivered"
    # a re-delivery, even re-serialised differently, gives the same key
    spaced = json.dumps(body, indent=2).encode()
    assert ADAPTER.event_id(InboundRequest("POST", "/", {}, spaced)) == first
    read = case("message_status", "read")
    assert event_key(raw(read)) != first
    assert event_key(raw(case("message", "text"))) == "wa:m:wamid.xyzxyz"
    # a batch: sha256 of the sorted keys, independent of the batching order
    batch = two_numbers_body()
    reordered = {**batch, "entry": list(reversed(batch["entry"]))}
    assert event_key(raw(batch)) == event_key(raw(reordered))
    assert event_key(raw(batch)).startswith("wa:h:")
    assert len(event_key(raw(batch))) <= 191
    # changes without ids: their canonical content
    approved = event_key(raw(case("template_status_update", "approved")))
    assert approved == event_key(json.dumps(case("template_status_update", "approved"), indent=1).encode())
    assert approved != event_key(raw(case("template_status_update", "rejected")))
    with pytest.raises(InvalidInput):
        event_key(b"not json")


def test_send_buckets_pace_per_number() -> None:
    (bucket,) = ADAPTER.send_buckets(message(text="hi"), ctx())
    assert bucket.key == "wa:1122"
    assert bucket.limit == paced(80)
    (custom,) = ADAPTER.send_buckets(
        message(text="hi"), ctx({"phone_number_id": "9", "rate_limit_per_second": 20})
    )
    assert custom.key == "wa:9"
    assert custom.limit == paced(20)


# Body builders, every output validated against Meta's spec


def builder_cases() -> list[tuple[str, dict[str, Any]]]:
    to = "15551234567"
    cases: list[tuple[str, dict[str, Any]]] = [
        ("text", outbound.text_body(to, "hello")),
        ("text preview", outbound.text_body(to, "see https://example.com", preview_url=True)),
        ("reply", outbound.text_body(to, "yes", reply_to="wamid.ABC")),
        ("mark read", outbound.read_receipt_body("wamid.ABC")),
        ("mark read typing", outbound.read_receipt_body("wamid.ABC", typing_indicator=True)),
        ("buttons", outbound.reply_buttons_body(to, "Pick", [("a", "A"), ("b", "B"), ("c", "C")])),
        ("cta url", outbound.cta_url_body(to, "Visit", "Open", "https://example.com")),
        (
            "list",
            outbound.list_body(
                to,
                "Menu",
                {
                    "button": "Choose",
                    "header": "Our menu",
                    "footer": "Thanks",
                    "sections": [
                        {"title": "Food", "rows": [{"id": "1", "title": "Pizza", "description": "Hot"}]},
                        {"title": "Drinks", "rows": [{"id": "2", "title": "Tea"}]},
                    ],
                },
            ),
        ),
        (
            "template params",
            outbound.template_body(to, {"name": "order", "language": "en_US", "parameters": ["Ann", 3]}),
        ),
        (
            "template components",
            outbound.template_body(
                to,
                {
                    "name": "order",
                    "language": {"code": "de"},
                    "components": [
                        {
                            "type": "header",
                            "parameters": [{"type": "image", "image": {"link": "https://x/y.png"}}],
                        },
                        {"type": "body", "parameters": [{"type": "text", "text": "Ann"}]},
                        {
                            "type": "button",
                            "sub_type": "quick_reply",
                            "index": "0",
                            "parameters": [{"type": "payload", "payload": "P"}],
                        },
                    ],
                },
            ),
        ),
        ("template bare", outbound.template_body(to, {"name": "hello_world", "language": "en_US"})),
    ]
    for kind in ("image", "video", "audio", "document", "sticker", "voice"):
        link = {"kind": kind, "url": f"https://files.example/{kind}", "file_name": "f.bin"}
        by_id = {"kind": kind, "provider_file_id": "4490709327384033"}
        upload = {"kind": kind, "media_id": "med_1", "file_name": "f.bin"}
        cases.append((f"{kind} by link", outbound.build_bodies(message(text="cap", attachments=[link]))[0]))
        cases.append((f"{kind} by id", outbound.build_bodies(message(attachments=[by_id]))[0]))
        uploaded = outbound.build_bodies(
            message(attachments=[upload], reply_to_provider_id="wamid.R"), {0: "777"}
        )
        cases.append((f"{kind} by upload, reply", uploaded[0]))
    rows = [[{"text": "Yes", "callback_data": "y"}, {"text": "No", "callback_data": "n"}]]
    cases.append(("message with buttons", outbound.build_bodies(message(text="Ok?", buttons=rows))[0]))
    image = {"kind": "image", "url": "https://files.example/i.png"}
    cases.append(
        (
            "buttons with image header",
            outbound.build_bodies(message(text="Ok?", buttons=rows, attachments=[image]))[0],
        )
    )
    cases.append(
        (
            "url button",
            outbound.build_bodies(message(text="Go", buttons=[[{"text": "Site", "url": "https://e.x"}]]))[0],
        )
    )
    listed = {"list": {"button": "Pick", "sections": [{"rows": [{"id": "r", "title": "Row"}]}]}}
    cases.append(("message with list", outbound.build_bodies(message(text="Menu", options=listed))[0]))
    template = {"name": "promo", "language": "en", "parameters": ["x"]}
    cases.append(
        (
            "message template",
            outbound.build_bodies(message(template=template, reply_to_provider_id="wamid.Z"))[0],
        )
    )
    return cases


BUILT = builder_cases()


@pytest.mark.parametrize(("name", "body"), BUILT, ids=[n for n, _ in BUILT])
def test_built_bodies_validate_against_the_spec(name: str, body: dict[str, Any]) -> None:
    assert spec.send_message_problems(body) == []
    # the same check, spelled out with jsonschema on the operation's schema (or the read receipt)
    if "status" in body:
        validator = spec.schema_validator(spec.READ_RECEIPT)
    else:
        validator = spec.schema_validator(spec.request_schema_name(spec.SEND_MESSAGE_PATH, "post"))
    assert list(validator.iter_errors(body)) == []


def test_builders_shape_what_the_brief_asks() -> None:
    by_upload = outbound.build_bodies(
        message(text="look", attachments=[{"kind": "document", "media_id": "m", "file_name": "a.pdf"}]),
        {0: "55"},
    )
    assert by_upload == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "15551234567",
            "type": "document",
            "document": {"id": "55", "caption": "look", "filename": "a.pdf"},
        }
    ]
    voice = outbound.build_bodies(
        message(text="t", attachments=[{"kind": "voice", "url": "https://a/b.ogg"}])
    )
    assert [b["type"] for b in voice] == ["audio", "text"]  # audio takes no caption: the text follows
    template = outbound.build_bodies(
        message(template={"name": "n", "language": "en", "parameters": ["A", "B"]})
    )[0]
    assert template["template"] == {
        "name": "n",
        "language": {"policy": "deterministic", "code": "en"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}
        ],
    }
    (preview,) = outbound.build_bodies(message(text="https://x.y", options={"preview_url": True}))
    assert preview["text"] == {"body": "https://x.y", "preview_url": True}
    (buttons,) = outbound.build_bodies(
        message(text="Q", buttons=[[{"text": "Yes"}], [{"text": "No", "callback_data": "n"}]])
    )
    assert buttons["interactive"]["action"]["buttons"] == [
        {"type": "reply", "reply": {"id": "Yes", "title": "Yes"}},
        {"type": "reply", "reply": {"id": "n", "title": "No"}},
    ]


def test_long_text_is_split_and_the_reply_goes_on_the_first_part() -> None:
    paragraph = ("word " * 500).strip()
    text = "\n\n".join([paragraph] * 4)  # 10 006 characters
    bodies = outbound.build_bodies(message(text=text, reply_to_provider_id="wamid.R"))
    # cut at the paragraph breaks (each in the second half of its 4096-character window)
    assert [b["text"]["body"] for b in bodies] == [paragraph] * 4
    assert bodies[0]["context"] == {"message_id": "wamid.R"}
    assert all("context" not in b for b in bodies[1:])
    words = ("word " * 2000).strip()
    pieces = outbound.split_text(words)
    assert [len(p) for p in pieces] == [4094, 4094, 1809]  # cut at spaces, which are dropped
    assert " ".join(pieces) == words
    unbroken = "x" * 9000
    assert [len(p) for p in outbound.split_text(unbroken)] == [4096, 4096, 808]
    assert outbound.split_text("short") == ["short"]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"text": "Q", "buttons": [[{"text": str(i)} for i in range(4)]]}, "at most 3 reply buttons"),
        ({"text": "Q", "buttons": [[{"text": "a"}, {"text": "b", "url": "https://x"}]]}, "not a mix"),
        ({"text": "Q", "buttons": [[{"text": "a very long button title"}]]}, "at most 20 characters"),
        ({"buttons": [[{"text": "a"}]]}, "need a text"),
        ({"text": "x" * 1025, "buttons": [[{"text": "a"}]]}, "at most 1024"),
        ({"text": "hi", "template": {"name": "t", "language": "en"}}, "sent alone"),
        ({"template": {"language": "en"}}, "template.name"),
        ({"template": {"name": "t"}}, "template.language"),
        ({"text": "m", "options": {"list": {"sections": []}}}, "options.list.button"),
        ({"attachments": [{"kind": "image"}]}, "neither a url nor a media_id"),
        ({}, "nothing to send"),
    ],
)
def test_builders_refuse_what_whatsapp_would(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ContentRejected, match=match):
        outbound.build_bodies(message(**fields))


def test_the_spec_validator_rejects_invalid_bodies() -> None:
    good = outbound.reply_buttons_body("1", "Pick", [("a", "A")])
    assert spec.send_message_problems(good) == []
    four = outbound.reply_buttons_body("1", "Pick", [(str(i), str(i)) for i in range(4)])
    assert any("interactive.action" in p for p in spec.send_message_problems(four))
    both = outbound.media_body("1", "image", {"id": "1", "link": "https://x"})
    assert spec.send_message_problems(both)
    no_to = {k: v for k, v in outbound.text_body("1", "x").items() if k != "to"}
    assert spec.send_message_problems(no_to) == ["(body): 'to' is a required property"]
    assert spec.send_message_problems({**outbound.text_body("1", "x"), "type": "fax"})[0].startswith(
        "type: 'fax'"
    )
    extra = {**outbound.text_body("1", "x"), "colour": "red"}
    assert "colour" in spec.send_message_problems(extra)[0]
    assert spec.send_message_problems({"messaging_product": "whatsapp", "status": "read"}) == [
        "(body): 'message_id' is a required property"
    ]


def test_the_normalisation_is_needed_and_keeps_the_examples_meaning() -> None:
    body = outbound.text_body("1", "x")
    raw_validator = spec.schema_validator("TextMessage", normalized=False)
    assert list(raw_validator.iter_errors(body))  # Meta's spec verbatim rejects every real body
    assert list(spec.schema_validator("TextMessage").iter_errors(body)) == []
    # The spec's own request examples pass, except those that contradict its schema.
    contradicting = {
        "Send Catalog Template Message",  # index is a number, sub_type upper-case
        "Send Contact Message",  # no recipient_type
        "Send Flow Template Message",
        "Send Location Message",  # latitude is a number, the schema says string
        "Send Message Template Interactive",  # language without policy
        "Send Message Template Media",
        "Send Message Template Text",
        "Send Multi-Product Message",  # header type "<HEADER_TYPE>"
        "Send Order Details Message",  # interactive types absent from the schema
        "Send Order Status Message",
        "Send Reply to Contact Message",
        "Send Reply to List Message",  # no type
        "Send Reply to Location Message",
        "Send Sample Issue Resolution Template",
        "Send Sample Shipping Confirmation Template",
        "Send Sample Text Message",
        "Send Test Message",
        "Send Text Message with Preview URL",  # no type
    }
    examples = spec.request_examples()
    assert len(examples) == 50
    failing = {name for name, example in examples.items() if spec.send_message_problems(example)}
    assert failing == contradicting
    assert spec.send_message_problems(examples["Send typing indicator and read receipt"]) == []


def test_the_supplements_fill_real_gaps_of_the_spec() -> None:
    schemas = spec.raw_spec()["components"]["schemas"]
    assert "cta_url" not in schemas["InteractiveObject"]["properties"]["type"]["enum"]
    assert schemas["TemplateComponent"]["properties"]["index"]["pattern"] == "^[2-6, 11-14]$"
    assert "status" not in json.dumps(schemas["Message"])


# Error mapping


def graph(
    code: int, *, subcode: int | None = None, message: str = "boom", transient: bool | None = None
) -> bytes:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbC"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient is not None:
        error["is_transient"] = transient
    error["error_data"] = {"messaging_product": "whatsapp", "details": "more detail"}
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, 130429, ProviderRateLimited),
        (400, 131056, ProviderRateLimited),
        (400, 80007, ProviderRateLimited),
        (403, 4, ProviderRateLimited),
        (400, 613, ProviderRateLimited),
        (400, 131047, PermanentProviderError),
        (400, 131026, RecipientInvalid),
        (400, 131030, RecipientInvalid),
        (401, 190, AuthRevoked),
        (400, 190, AuthRevoked),
        (403, 10, AuthRevoked),
        (401, 99999, AuthRevoked),
        (400, 100, ContentRejected),
        (400, 131008, ContentRejected),
        (400, 131009, ContentRejected),
        (400, 132001, ContentRejected),
        (500, 131000, TransientProviderError),
        (500, 1, TransientProviderError),
        (503, 2, TransientProviderError),
        (502, 99999, TransientProviderError),
        (400, 368, PermanentProviderError),
    ],
)
def test_error_mapping(status: int, code: int, expected: type[Exception]) -> None:
    error = graph_error(status, graph(code), {}, recipient="155", phone_number_id="11")
    assert type(error) is expected
    assert error.details["provider_code"] == str(code)
    assert error.details["fbtrace_id"] == "AbC"
    assert "boom" in error.message


def test_error_mapping_details() -> None:
    pair = graph_error(400, graph(131056), {}, recipient="155", phone_number_id="11")
    assert isinstance(pair, ProviderRateLimited)
    assert pair.retry_after == 6.0
    assert pair.details["bucket"] == "wa:11:155"
    throughput = graph_error(429, graph(130429), {"Retry-After": "12"})
    assert isinstance(throughput, ProviderRateLimited)
    assert throughput.retry_after == 12.0
    assert throughput.details["retry_after"] == 12.0
    hourly = graph_error(400, graph(80007), {})
    assert isinstance(hourly, ProviderRateLimited)
    assert hourly.retry_after == 60.0
    window = graph_error(400, graph(131047, message="Re-engagement message"), {})
    assert "template" in window.message
    assert "24 hours" in window.message
    assert window.details["provider_code"] == "131047"
    unreachable = graph_error(400, graph(131026), {})
    assert unreachable.details["unreachable"] is True
    assert graph_error(400, graph(131030), {}).details["unreachable"] is False
    assert graph_error(400, graph(99, subcode=2494010), {}).details["provider_subcode"] == "2494010"
    assert type(graph_error(400, graph(99, transient=True), {})) is TransientProviderError


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (502, TransientProviderError),
        (429, ProviderRateLimited),
        (401, AuthRevoked),
        (400, PermanentProviderError),
    ],
)
def test_error_mapping_without_a_graph_body(status: int, expected: type[Exception]) -> None:
    error = graph_error(status, b"<html>oops</html>", {"retry-after": "3"})
    assert type(error) is expected
    assert error.details["provider_code"] == str(status)
    if isinstance(error, ProviderRateLimited):
        assert error.retry_after == 3.0


def test_adapter_identity() -> None:
    assert WhatsAppCloudAdapter.kind == IntegrationKind.WHATSAPP_CLOUD
    adapter = WhatsAppCloudAdapter("http://127.0.0.1:9/", "v99.0")
    assert adapter.graph_base == "http://127.0.0.1:9"
    assert adapter.api_version == "v99.0"
    with pytest.raises(PermanentProviderError, match="phone_number_id"):
        WhatsAppCloudAdapter.phone_number_id(ctx({}))
