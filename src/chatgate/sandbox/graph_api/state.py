"""The simulated Graph API's in-memory state: numbers, media, sent messages, faults, records."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

from chatgate.sandbox.graph_api.payloads import graph_error

WINDOW_SECONDS = 24 * 3600
WINDOW_MODES = ("off", "reject", "webhook")
_fault_ids = itertools.count(1)


@dataclass
class Number:
    """A registered business phone number and its sandbox settings."""

    phone_number_id: str
    display_phone_number: str
    access_token: str
    app_secret: str
    waba_id: str
    verified_name: str = "Sandbox Business"
    quality_rating: str = "GREEN"
    callback_url: str | None = None
    # 24-hour customer service window: "off" (no check), "reject" (a free-form send outside
    # the window answers 131047 at once) or "webhook" (accepted, then a failed status with
    # 131047, which is what Meta really does).
    window_mode: str = "off"
    auto_status: bool = True  # sent → delivered → read webhooks for every accepted message
    status_interval: float = 0.01  # seconds between those status webhooks
    last_inbound: dict[str, float] = field(default_factory=dict)  # wa_id → Unix time
    names: dict[str, str] = field(default_factory=dict)  # wa_id → profile name

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        for secret in ("access_token", "app_secret"):
            data.pop(secret)
        return data


@dataclass
class StoredMedia:
    id: str
    phone_number_id: str
    content: bytes
    mime_type: str
    sha256: str  # base64, like Meta's
    file_name: str | None = None


@dataclass
class SentMessage:
    id: str
    phone_number_id: str
    to: str
    wa_id: str
    type: str
    body: dict[str, Any]
    at: float


@dataclass
class Call:
    """One Graph request as the sandbox saw it (no token, no file bytes)."""

    method: str
    path: str
    query: dict[str, str]
    object_id: str | None
    authorized: bool | None = None
    json: Any = None
    form: dict[str, Any] | None = None
    status: int = 0
    fault: str | None = None
    at: float = 0.0


@dataclass
class Delivery:
    """One webhook POST to a callback URL."""

    url: str
    payload: dict[str, Any]
    status: int | None = None
    error: str | None = None


# kind → (HTTP status, Graph code, message, details, error_subcode)
FAULT_PRESETS: dict[str, tuple[int, int, str, str | None, int | None]] = {
    "rate_limit": (
        429,
        130429,
        "(#130429) Rate limit hit",
        "Cloud API message throughput has been reached.",
        None,
    ),
    "pair_rate_limit": (
        429,
        131056,
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone number "
        "to the same phone number in a short period of time.",
        None,
    ),
    "server_error": (
        500,
        131000,
        "(#131000) Something went wrong",
        "Message failed to send due to an unknown error.",
        None,
    ),
    "unavailable": (503, 2, "Service temporarily unavailable", None, None),
    "auth": (401, 190, "Error validating access token: Session has expired.", None, 463),
    "reengagement": (
        400,
        131047,
        "(#131047) Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        None,
    ),
    "undeliverable": (400, 131026, "(#131026) Message Undeliverable.", "Message Undeliverable.", None),
    "invalid_parameter": (400, 100, "(#100) Invalid parameter", None, None),
}
FAULT_KINDS = (*FAULT_PRESETS, "slow", "error")


@dataclass
class Fault:
    """Answer the next `times` matching Graph calls with an error (or slowly).

    Matches by phone number / object id, a substring of the path and the method (each
    optional). `slow` only delays (`delay` seconds, default 2) and then answers normally; the
    others may add a delay too. `error` takes `status` and `code` as given.
    """

    kind: str
    times: int | None = 1  # None: until cleared
    phone_number_id: str | None = None
    path: str | None = None
    method: str | None = None
    status: int | None = None
    code: int | None = None
    subcode: int | None = None
    message: str | None = None
    details: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    id: int = field(default_factory=lambda: next(_fault_ids))
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if self.kind == "error" and (self.status is None or self.code is None):
            raise ValueError("an 'error' fault needs status and code")
        if self.kind == "slow" and not self.delay:
            self.delay = 2.0
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or null: until cleared)")

    def matches(self, method: str, path: str, object_id: str | None) -> bool:
        return (
            (self.method is None or self.method.upper() == method.upper())
            and (self.path is None or self.path in path)
            and (
                self.phone_number_id is None
                or self.phone_number_id == object_id
                or f"/{self.phone_number_id}/" in path
            )
        )

    def answer(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """(status, body, headers), or None for a fault that only delays."""
        if self.kind == "slow":
            return None
        status, code, message, details, subcode = FAULT_PRESETS.get(self.kind, (0, 0, "Error", None, None))
        status = self.status or status
        code = self.code if self.code is not None else code
        body = graph_error(
            code,
            self.message or message,
            details=self.details or details,
            subcode=self.subcode if self.subcode is not None else subcode,
        )
        headers = {"Retry-After": f"{self.retry_after:g}"} if self.retry_after is not None else {}
        return status, body, headers

    def public(self) -> dict[str, Any]:
        return asdict(self)
