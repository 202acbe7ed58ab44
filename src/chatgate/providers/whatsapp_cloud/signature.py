"""Webhook authenticity: Meta's `X-Hub-Signature-256` and the GET subscription handshake.

Meta signs the raw body: `sha256=` + lowercase hex HMAC-SHA256 keyed with the App Secret. The
check runs over the bytes exactly as received (re-serialised JSON would not match) and fails
closed: no secret configured, no header, a malformed header or a wrong digest all refuse.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from chatgate.domain.errors import PermissionDenied, Unauthenticated

SIGNATURE_HEADER = "x-hub-signature-256"
_PREFIX = "sha256="
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def sign(app_secret: str, body: bytes) -> str:
    """The header value Meta would send for `body`."""
    return _PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: str | None, body: bytes, header: str | None) -> None:
    """Return quietly when `header` is the signature of `body`; Unauthenticated otherwise."""
    if not app_secret:
        raise Unauthenticated(
            "this WhatsApp integration has no app_secret configured, so webhooks cannot be verified"
        )
    if not header:
        raise Unauthenticated("the X-Hub-Signature-256 header is missing")
    value = header.strip()
    if not value.startswith(_PREFIX) or not _HEX_DIGEST.fullmatch(value[len(_PREFIX) :]):
        raise Unauthenticated("the X-Hub-Signature-256 header is not of the form sha256=<64 hex digits>")
    if not hmac.compare_digest(
        sign(app_secret, body).encode(), _PREFIX.encode() + value[len(_PREFIX) :].lower().encode()
    ):
        raise Unauthenticated("the X-Hub-Signature-256 signature does not match the body and the app secret")


def verify_subscription(query: Mapping[str, str], verify_token: str) -> str:
    """Meta's GET handshake: the `hub.challenge` to echo when mode and token match.

    Raises PermissionDenied (answer 403) otherwise, including when no verify token is set.
    """
    if not verify_token:
        raise PermissionDenied("this WhatsApp integration has no verify_token configured")
    if query.get("hub.mode") != "subscribe":
        raise PermissionDenied("hub.mode must be 'subscribe'")
    given = query.get("hub.verify_token") or ""
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        raise PermissionDenied("hub.verify_token does not match the configured verify token")
    challenge = query.get("hub.challenge")
    if not challenge:
        raise PermissionDenied("hub.challenge is missing")
    return challenge
