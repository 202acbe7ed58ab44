"""Twilio's error answers to the typed errors workers act on (pure).

Twilio answers failures with `{"code": 21211, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}`.
The Twilio code is kept in `details["provider_code"]` (with `more_info`) on every error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from chatgate.domain.errors import (
    AuthRevoked,
    ContentRejected,
    PermanentProviderError,
    ProviderError,
    ProviderRateLimited,
    RecipientInvalid,
    TransientProviderError,
)

DEFAULT_RETRY_AFTER = 1.0

RATE_LIMITED = frozenset({"20429"})
AUTHENTICATION = frozenset({"20003"})
OUTSIDE_WINDOW = "63016"  # WhatsApp: freeform message outside the 24-hour customer service window
UNSUBSCRIBED = "21610"  # the recipient replied STOP
RECIPIENT_INVALID = frozenset({"21211", "21614", "21612"})  # not a (mobile, reachable) number
CONTENT_REJECTED = frozenset(
    {
        "21602",  # body required
        "21617",  # body over 1600 characters
        "21620",  # invalid media URL
        "21623",  # too many media
        "21655",  # invalid ContentSid
        "21656",  # invalid ContentVariables
    }
)
SERVER_ERRORS = frozenset({"20500", "20503"})

# Status callbacks carry `ErrorCode` without a message: what the common ones mean.
CALLBACK_ERRORS = {
    OUTSIDE_WINDOW: "WhatsApp refused a freeform message outside the 24-hour customer-service window: "
    "send an approved Content template (template.content_sid) instead",
    "21211": "the 'To' number is not a valid phone number",
    UNSUBSCRIBED: "the recipient has unsubscribed (replied STOP)",
    "30003": "the recipient's handset is unreachable",
    "30004": "the message was blocked",
    "30005": "the destination number is unknown or no longer exists",
    "30006": "the destination is a landline or an unreachable carrier",
    "30007": "the carrier filtered the message",
    "30008": "unknown delivery error",
    "63003": "the recipient's number is not on WhatsApp",
}


def describe(code: str | None) -> str | None:
    """A human explanation of a Twilio error code reported in a status callback, if known."""
    if code is None:
        return None
    text = CALLBACK_ERRORS.get(code)
    return f"Twilio {code}: {text}" if text else None


@dataclass(frozen=True)
class TwilioError:
    status: int
    code: str | None
    message: str
    more_info: str | None = None


def parse_error(status: int, body: bytes) -> TwilioError:
    """Twilio's error JSON, or a plain description when the body is something else."""
    try:
        payload: Any = json.loads(body or b"null")
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return TwilioError(status, None, f"HTTP {status}")
    code = payload.get("code")
    message = payload.get("message") or payload.get("detail") or f"HTTP {status}"
    more_info = payload.get("more_info")
    return TwilioError(
        status,
        str(code) if isinstance(code, int | str) and str(code) else None,
        str(message),
        more_info if isinstance(more_info, str) else None,
    )


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float:
    """`Retry-After` in seconds (a number or an HTTP date); DEFAULT_RETRY_AFTER when absent."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if not value:
        return DEFAULT_RETRY_AFTER
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_for(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """The typed error for a failed Twilio API call."""
    error = parse_error(status, body)
    code = error.code
    details: dict[str, Any] = {"provider_code": code or str(status), "http_status": status}
    if error.more_info:
        details["more_info"] = error.more_info
    said = f"Twilio {code or status}: {error.message}"
    if code in RATE_LIMITED or status == 429:
        limited = ProviderRateLimited(f"{said} (rate limited)", retry_after=retry_after(headers))
        limited.details.update(details)
        return limited
    if code in AUTHENTICATION or status == 401:
        return AuthRevoked(
            f"{said}: Twilio refused the account SID / auth token (or API key); re-enter the credentials",
            details=details,
        )
    if code == OUTSIDE_WINDOW:
        return PermanentProviderError(
            f"{said}: the recipient has not written within the last 24 hours, so WhatsApp allows "
            "no freeform message; send an approved Content template (template.content_sid) instead",
            details=details,
        )
    if code == UNSUBSCRIBED:
        return RecipientInvalid(
            f"{said}: the recipient has unsubscribed (replied STOP)", details={**details, "unreachable": True}
        )
    if code in RECIPIENT_INVALID:
        return RecipientInvalid(said, details=details)
    if code in CONTENT_REJECTED:
        return ContentRejected(said, details=details)
    if status >= 500 or status in (408, 425) or code in SERVER_ERRORS:
        return TransientProviderError(said, details=details)
    return PermanentProviderError(said, details=details)
