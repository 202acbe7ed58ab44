"""Standard Webhooks signing: known-answer vectors, rotation, and the reference package as oracle."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chatgate.delivery import signing
from chatgate.delivery.signing import (
    VerifiedWebhook,
    WebhookSecret,
    generate_secret,
    parse_secret,
    sign,
    signature_header,
    verify,
)
from chatgate.domain.errors import InvalidInput, Unauthenticated
from tests.contracts import STANDARD_WEBHOOK_VECTORS

VECTORS_PATH = STANDARD_WEBHOOK_VECTORS
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
DEFAULTS: dict[str, Any] = VECTORS["defaults"]
SECRET = DEFAULTS["secret"]
MSG_ID = DEFAULTS["msg_id"]
TS = DEFAULTS["timestamp"]
BODY = DEFAULTS["payload"].encode()

# The message the verifier should give for each invalid vector (proves the reason is precise).
EXPECTED_REASON = {
    "invalid_signature_one_char_changed": "no matching webhook signature",
    "payload_tampered": "no matching webhook signature",
    "payload_reserialized_whitespace_changed": "no matching webhook signature",
    "only_non_v1_signatures": "has no v1 signature",
    "timestamp_too_old": "too old",
    "timestamp_too_new": "too new",
    "timestamp_not_a_number": "not an integer unix timestamp",
    "missing_webhook_id": "missing webhook header(s): webhook-id",
    "missing_webhook_timestamp": "missing webhook header(s): webhook-timestamp",
    "missing_webhook_signature": "missing webhook header(s): webhook-signature",
}


@pytest.mark.parametrize("case", VECTORS["sign_cases"], ids=lambda c: c["name"])
def test_sign_vectors(case: dict[str, Any]) -> None:
    body = case["payload"].encode()
    forms = [case["secret"], case.get("secret_unpadded_form_must_also_work", case["secret"])]
    for secret in forms:
        assert sign(secret, case["msg_id"], case["timestamp"], body) == case["expected_signature"]
        assert (
            sign(parse_secret(secret), case["msg_id"], case["timestamp"], body) == case["expected_signature"]
        )


@pytest.mark.parametrize("case", VECTORS["verify_cases"], ids=lambda c: c["name"])
def test_verify_vectors(case: dict[str, Any]) -> None:
    body = case["payload"].encode()
    if case["expected_valid"]:
        result = verify(SECRET, case["headers"], body, now=case["now"])
        assert result == VerifiedWebhook(msg_id=MSG_ID, timestamp=TS)
    else:
        with pytest.raises(Unauthenticated) as info:
            verify(SECRET, case["headers"], body, now=case["now"])
        assert EXPECTED_REASON[case["name"]] in info.value.message


@pytest.mark.parametrize("case", VECTORS["verify_cases"], ids=lambda c: c["name"])
def test_verify_keys_gives_the_same_verdicts_as_verify(case: dict[str, Any]) -> None:
    """The inbound path's variant (decoded keys, lower-case header names) agrees with `verify`
    on every vector, with the same reason when it refuses."""
    body = case["payload"].encode()
    headers = {name.lower(): value for name, value in case["headers"].items()}
    keys = signing.secret_keys((SECRET,))
    if case["expected_valid"]:
        assert signing.verify_keys(keys, headers, body, now=case["now"]) == verify(
            SECRET, headers, body, now=case["now"]
        )
    else:
        with pytest.raises(Unauthenticated) as info:
            signing.verify_keys(keys, headers, body, now=case["now"])
        assert EXPECTED_REASON[case["name"]] in info.value.message


@pytest.mark.parametrize("key_length", [0, 1, 24, 32, 63, 64, 65, 100, 200])
def test_keyed_sha256_is_the_standard_librarys_hmac(key_length: int) -> None:
    # Keys shorter than SHA-256's 64-byte block are padded, longer ones hashed first (RFC 2104).
    key = bytes(range(256))[:key_length]
    for parts in [(), (b"",), (b"msg_1.1700000000.",), (b"msg_1.1700000000.", b'{"a":1}' * 40)]:
        expected = hmac.new(key, b"".join(parts), hashlib.sha256).digest()
        assert signing.KeyedSha256(key).digest(*parts) == expected
    keyed = signing.KeyedSha256(key)
    assert keyed.digest(b"one") == keyed.digest(b"one")  # its key state is not consumed by a message
    assert keyed.digest(b"one") != keyed.digest(b"two")


def test_secret_keys_are_the_parsed_secrets_in_order() -> None:
    other = generate_secret()
    assert signing.secret_keys((SECRET, other)) == (parse_secret(SECRET).key, parse_secret(other).key)


@pytest.mark.parametrize("encoded", ["bm90IGI2NA", "bm90IGI2NA===", "bm90-IGI2NA==", "bm90IGI2N*=="])
def test_a_signature_in_anything_but_padded_standard_base64_is_not_read(encoded: str) -> None:
    assert signing._v1_signatures(f"v1,{encoded}") == []
    assert signing._v1_signatures("v1,bm90IGI2NA==") == [b"not b64"]


def test_every_invalid_vector_has_an_expected_reason() -> None:
    invalid = {c["name"] for c in VECTORS["verify_cases"] if not c["expected_valid"]}
    assert invalid == set(EXPECTED_REASON)


@pytest.mark.parametrize("bad", VECTORS["secret_cases"][0]["secrets"])
def test_empty_secret_rejected(bad: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        parse_secret(bad)


@pytest.mark.parametrize("bad", ["whsec_not base64!", "whsec_abcde", "whsec_ab-_cd"])
def test_bad_secret_has_a_clear_error(bad: str) -> None:
    with pytest.raises(InvalidInput, match="not valid base64"):
        parse_secret(bad)


def test_secret_prefix_is_optional_and_round_trips() -> None:
    parsed = parse_secret(SECRET)
    assert parse_secret(SECRET.removeprefix("whsec_")) == parsed
    assert parsed.as_whsec() == SECRET
    assert parsed.key.hex() not in repr(parsed)


def test_generate_secret() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(parse_secret(secret).key) == 32
    assert generate_secret() != secret
    assert len(parse_secret(generate_secret(64)).key) == 64
    with pytest.raises(InvalidInput):
        generate_secret(16)


def test_tolerance_edges() -> None:
    hdrs = signing.headers(SECRET, MSG_ID, TS, BODY)
    verify(SECRET, hdrs, BODY, now=TS - 300)
    verify(SECRET, hdrs, BODY, now=TS + 300)
    with pytest.raises(Unauthenticated, match="too new: 301 s"):
        verify(SECRET, hdrs, BODY, now=TS - 301)
    with pytest.raises(Unauthenticated, match="too old: 11 s"):
        verify(SECRET, hdrs, BODY, now=TS + 11, tolerance=10)


def test_headers_shape() -> None:
    hdrs = signing.headers(SECRET, MSG_ID, TS, BODY)
    assert hdrs == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TS),
        "webhook-signature": VECTORS["sign_cases"][0]["expected_signature"],
    }


def test_multi_secret_header_for_rotation() -> None:
    old, new = generate_secret(), generate_secret()
    header = signature_header([new, old], MSG_ID, TS, BODY)
    parts = header.split(" ")
    assert parts == [sign(new, MSG_ID, TS, BODY), sign(old, MSG_ID, TS, BODY)]
    hdrs = {"webhook-id": MSG_ID, "webhook-timestamp": str(TS), "webhook-signature": header}
    # A receiver that only knows either secret accepts the delivery.
    verify(old, hdrs, BODY, now=TS)
    verify(new, hdrs, BODY, now=TS)
    with pytest.raises(Unauthenticated, match=r"2 v1 signature\(s\) checked against 1 secret"):
        verify(generate_secret(), hdrs, BODY, now=TS)


def test_verify_accepts_any_candidate_secret() -> None:
    current, previous = generate_secret(), generate_secret()
    hdrs = signing.headers(previous, MSG_ID, TS, BODY)
    verify([current, previous], hdrs, BODY, now=TS)
    verify([parse_secret(current), parse_secret(previous)], hdrs, BODY, now=TS)
    with pytest.raises(InvalidInput, match="at least one"):
        verify([], hdrs, BODY, now=TS)


@pytest.mark.parametrize("case_fn", [str.upper, str.title, str.lower])
def test_header_lookup_is_case_insensitive(case_fn: Any) -> None:
    hdrs = {case_fn(k): v for k, v in signing.headers(SECRET, MSG_ID, TS, BODY).items()}
    assert verify(SECRET, hdrs, BODY, now=TS).msg_id == MSG_ID


def test_conflicting_duplicate_headers_rejected() -> None:
    hdrs = signing.headers(SECRET, MSG_ID, TS, BODY)
    hdrs["Webhook-Id"] = "msg_other"
    with pytest.raises(Unauthenticated, match="conflicting"):
        verify(SECRET, hdrs, BODY, now=TS)


@pytest.mark.parametrize("raw", ["1614265330.0", "+1614265330", " 1614265330", "1_614_265_330", "-1"])
def test_timestamp_must_be_plain_digits(raw: str) -> None:
    hdrs = signing.headers(SECRET, MSG_ID, TS, BODY) | {"webhook-timestamp": raw}
    with pytest.raises(Unauthenticated, match="not an integer"):
        verify(SECRET, hdrs, BODY, now=TS)


def test_malformed_signature_entries_are_skipped() -> None:
    good = sign(SECRET, MSG_ID, TS, BODY)
    hdrs = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TS),
        "webhook-signature": f"garbage v1,%%%notb64 v1a,abc  {good}",
    }
    verify(SECRET, hdrs, BODY, now=TS)


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "msg\n1", "msg_é"])
def test_sign_rejects_ambiguous_msg_ids(msg_id: str) -> None:
    with pytest.raises(InvalidInput, match="webhook id"):
        sign(SECRET, msg_id, TS, BODY)


def test_str_secret_is_not_iterated_as_characters() -> None:
    assert signature_header(SECRET, MSG_ID, TS, BODY) == sign(SECRET, MSG_ID, TS, BODY)
    assert signature_header(WebhookSecret(b"k" * 24), MSG_ID, TS, BODY).count("v1,") == 1


# --- oracle: the standardwebhooks reference package (uses the real clock, so sign "now") ---


def test_reference_package_verifies_our_signature() -> None:
    secret = generate_secret()
    now = int(time.time())
    body = b'{"type":"message.received","data":{"text":"h\xc3\xa9llo"}}'
    hdrs = signing.headers(secret, "msg_oracle1", now, body)
    assert Webhook(secret).verify(body, hdrs) == json.loads(body)
    # Rotation header: the reference accepts it with either secret alone.
    other = generate_secret()
    rotated = signing.headers([other, secret], "msg_oracle2", now, body)
    Webhook(secret).verify(body, rotated)
    Webhook(other).verify(body, rotated)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, rotated)


def test_we_verify_the_reference_package_signature() -> None:
    secret = generate_secret()
    now = int(time.time())
    body = b'{"event":"delivery.test"}'
    ref_sig = Webhook(secret).sign("msg_oracle3", datetime.fromtimestamp(now, tz=UTC), body.decode())
    assert ref_sig == sign(secret, "msg_oracle3", now, body)
    hdrs = {"Webhook-Id": "msg_oracle3", "Webhook-Timestamp": str(now), "Webhook-Signature": ref_sig}
    assert verify(secret, hdrs, body, now=time.time()) == VerifiedWebhook("msg_oracle3", now)
    with pytest.raises(Unauthenticated):
        verify(secret, hdrs, body + b" ", now=time.time())
