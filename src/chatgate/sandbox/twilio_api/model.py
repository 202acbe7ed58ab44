"""The sandbox's state and Twilio's wire formats (error bodies, signatures, resources)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from starlette.responses import JSONResponse

API_VERSION = "2010-04-01"
WHATSAPP = "whatsapp:"
WINDOW_SECONDS = 24 * 3600
DEFAULT_PROGRESSION = {
    "sms": ["queued", "sent", "delivered"],
    "whatsapp": ["queued", "sent", "delivered", "read"],
}
WINDOW_MODES = ("off", "reject", "callback")
FAULT_KINDS = ("rate_limit", "server_error", "unauthorized", "slow", "error")
ERROR_MESSAGES = {
    63016: "Failed to send freeform message because you are outside the allowed window. "
    "If you are using WhatsApp, please use a Message Template.",
}


def twilio_signature(token: str, url: str, params: list[tuple[str, str]]) -> str:
    """What Twilio puts in X-Twilio-Signature: HMAC-SHA1(token, url + sorted name+value), base64."""
    data = url
    for name in sorted({name for name, _ in params}):
        for value in sorted({v for n, v in params if n == name}):
            data += name + value
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def rfc2822(moment: float) -> str:
    return format_datetime(datetime.fromtimestamp(moment, UTC).replace(microsecond=0))


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class TwilioApiError(Exception):
    """An error answered in Twilio's shape."""

    def __init__(
        self, status: int, code: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        if self.code == 20003:
            body["detail"] = "Your AccountSid or AuthToken was incorrect."
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class SandboxControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Account:
    sid: str
    auth_token: str
    friendly_name: str
    status: str = "active"
    api_keys: dict[str, str] = field(default_factory=dict)
    senders: set[str] = field(default_factory=set)
    opt_outs: set[str] = field(default_factory=set)
    created: float = field(default_factory=time.time)


@dataclass
class SandboxMessage:
    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    media_urls: list[str]
    content_sid: str | None
    content_variables: str | None
    status_callback: str | None
    status: str
    created: float
    updated: float
    form: list[tuple[str, str]]
    error_code: int | None = None
    error_message: str | None = None
    sent: float | None = None

    @property
    def channel(self) -> str:
        return "whatsapp" if self.to.startswith(WHATSAPP) else "sms"

    def resource(self) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        segments = max(1, math.ceil(len(self.body) / 160)) if self.body else (0 if self.content_sid else 1)
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.created),
            "date_sent": rfc2822(self.sent) if self.sent is not None else None,
            "date_updated": rfc2822(self.updated),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


@dataclass
class RecordedCall:
    method: str
    path: str
    query: str
    form: list[tuple[str, str]]
    auth_user: str | None
    status: int = 0
    fault: str | None = None
    at: float = field(default_factory=time.time)


@dataclass
class CallbackRecord:
    message_sid: str
    url: str
    status: str
    params: list[tuple[str, str]]
    signature: str
    response_status: int | None = None
    error: str | None = None


@dataclass
class Fault:
    kind: str
    count: int = 1
    status: int | None = None
    code: int | None = None
    message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    path_contains: str | None = None
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path_contains or self.path_contains in path


@dataclass
class Settings:
    whatsapp_window: str = "off"
    auto_status: bool = True
    callback_delay: float = 0.02
    progression: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_PROGRESSION))


@dataclass
class MediaFile:
    account_sid: str
    message_sid: str
    content: bytes
    content_type: str
