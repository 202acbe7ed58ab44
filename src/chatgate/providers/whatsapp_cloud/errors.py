"""Graph API error answers to the typed provider errors workers act on.

Graph answers `{"error": {"message", "type", "code", "error_subcode", "error_data":
{"messaging_product", "details"}, "fbtrace_id", "is_transient"}}`; the numeric `code` decides,
the HTTP status only when the body is not Graph's. Every error carries `provider_code` (and
subcode, fbtrace_id when given) in its details.

| Graph code                                   | error                                          |
|----------------------------------------------|------------------------------------------------|
| 130429 throughput, 80007 WABA, 4 app, 613    | ProviderRateLimited (Retry-After, else table)  |
| 131056 pair rate limit (same recipient)      | ProviderRateLimited, 6 s, bucket = number+to   |
| 131047 re-engagement (24-hour window closed) | PermanentProviderError: send a template        |
| 131026 undeliverable, 131021, 131030         | RecipientInvalid (131026: unreachable)         |
| 190 token, 10/200 permission, HTTP 401       | AuthRevoked                                    |
| 100, 131008, 131009, 131051-131053, 132xxx   | ContentRejected                                |
| HTTP 5xx, 1, 2, 131000, 131016, is_transient | TransientProviderError                         |
| anything else                                | PermanentProviderError (HTTP 429: rate limited)|
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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

# Seconds to wait when Graph gives no Retry-After. Throughput limits clear within a second;
# the pair limit allows about one message per 6 s to the same user; the WABA and app limits
# (80007, 4, 613) are counted over an hour, so a minute is a polite first step.
RATE_LIMIT_RETRY_AFTER = {130429: 1.0, 131056: 6.0, 80007: 60.0, 4: 60.0, 613: 60.0}
REENGAGEMENT = 131047
UNREACHABLE = 131026
RECIPIENT_CODES = frozenset({UNREACHABLE, 131021, 131030})
AUTH_CODES = frozenset({190, 10, 200})
CONTENT_CODES = frozenset({100, 131008, 131009, 131051, 131052, 131053})
TRANSIENT_CODES = frozenset({1, 2, 131000, 131016})


def parse_error(body: bytes) -> dict[str, Any] | None:
    """The `error` object of a Graph answer, or None when the body is not Graph's shape."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, dict) else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _retry_after(headers: Mapping[str, str], default: float) -> float:
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def is_not_found(status: int, error: Mapping[str, Any] | None) -> bool:
    """For a GET of one object: HTTP 404, or Graph's code 100 ("Unsupported get request. Object
    with ID … does not exist, cannot be loaded due to missing permissions…", subcode 33)."""
    return status == 404 or (error is not None and _int(error.get("code")) == 100)


def graph_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    recipient: str | None = None,
    phone_number_id: str | None = None,
) -> ProviderError:
    """The typed error for a non-2xx Graph answer (returned, not raised)."""
    error = parse_error(body)
    if error is None:
        return _status_only(status, headers)
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    message = str(error.get("message") or f"HTTP {status}")
    details_text = (
        error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
    )
    text = f"WhatsApp: {message}" + (
        f" ({details_text})" if details_text and details_text not in message else ""
    )
    details: dict[str, Any] = {
        "provider_code": str(code) if code is not None else str(status),
        "http_status": status,
    }
    if subcode is not None:
        details["provider_subcode"] = str(subcode)
    if error.get("fbtrace_id"):
        details["fbtrace_id"] = str(error["fbtrace_id"])

    if code in RATE_LIMIT_RETRY_AFTER:
        limited = ProviderRateLimited(text, retry_after=_retry_after(headers, RATE_LIMIT_RETRY_AFTER[code]))
        limited.details.update(details)
        if code == 131056 and phone_number_id and recipient:
            # Only this number→recipient pair is limited: pause that, not the whole number.
            limited.details["bucket"] = f"wa:{phone_number_id}:{recipient}"
        return limited
    if code == REENGAGEMENT:
        return PermanentProviderError(
            "WhatsApp: more than 24 hours have passed since the customer last wrote, so only an approved "
            f"template message can be sent to them now ({message}, #{code})",
            details=details,
        )
    if code in RECIPIENT_CODES:
        return RecipientInvalid(text, details={**details, "unreachable": code == UNREACHABLE})
    if code in AUTH_CODES or status == 401:
        return AuthRevoked(f"WhatsApp refused the access token: {message} (#{code})", details=details)
    if code in TRANSIENT_CODES or status >= 500 or error.get("is_transient") is True:
        return TransientProviderError(text, details=details)
    if code in CONTENT_CODES or (code is not None and 132000 <= code < 133000):
        return ContentRejected(text, details=details)
    if status == 429:
        limited = ProviderRateLimited(text, retry_after=_retry_after(headers, 1.0))
        limited.details.update(details)
        return limited
    return PermanentProviderError(text, details=details)


def _status_only(status: int, headers: Mapping[str, str]) -> ProviderError:
    text = f"the WhatsApp Cloud API answered HTTP {status} without a Graph error body"
    details = {"provider_code": str(status), "http_status": status}
    if status == 429:
        limited = ProviderRateLimited(text, retry_after=_retry_after(headers, 1.0))
        limited.details.update(details)
        return limited
    if status == 401:
        return AuthRevoked(text, details=details)
    if status >= 500 or status in (408, 425):
        return TransientProviderError(text, details=details)
    return PermanentProviderError(text, details=details)
