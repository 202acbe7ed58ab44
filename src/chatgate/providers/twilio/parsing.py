"""Twilio's messaging webhooks, form-encoded, to provider-neutral events (pure).

Two kinds of request reach the same URL:

- an inbound message (https://www.twilio.com/docs/messaging/guides/webhook-request):
  `MessageSid`, `SmsSid`, `AccountSid`, `MessagingServiceSid`, `From`, `To`, `Body`,
  `NumMedia`, `MediaUrl{N}`, `MediaContentType{N}`, `SmsStatus=received`, and for WhatsApp
  `ProfileName`, `WaId`, `ButtonPayload`, `ButtonText`, `Latitude`, `Longitude`, `Address`,
  `Label`, `OriginalRepliedMessageSid`…;
- a status callback for one of our messages: `MessageSid`, `MessageStatus` (and the older
  `SmsStatus`), `ErrorCode`, `ErrorMessage`, `From`, `To`…, and no `Body`.

Inbound messages are told apart by their status `received` (or `receiving`), or by carrying a
body or media without any status. Twilio adds parameters without notice, so unknown ones are
ignored here (they are still covered by the signature check).
"""

from __future__ import annotations

from typing import Any

from chatgate.domain.errors import InvalidInput
from chatgate.domain.inbound import (
    Attachment,
    ChatRef,
    Ignored,
    Party,
    ProviderEvent,
    ReceivedMessage,
    StatusUpdate,
)
from chatgate.domain.messages import ConversationKind, MessageStatus
from chatgate.providers.twilio.errors import describe
from chatgate.providers.twilio.signature import form_params

WHATSAPP_PREFIX = "whatsapp:"
INBOUND_STATUSES = frozenset({"received", "receiving"})
MAX_MEDIA = 10  # Twilio sends at most 10 media per message

_STATUS_MAP = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "undelivered": MessageStatus.FAILED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
}
# Our message is already `queued` when Twilio accepts it; these add nothing.
_NOOP_STATUSES = frozenset({"queued", "sending", "accepted", "scheduled"})


def params_of(body: bytes) -> dict[str, str]:
    """The body's parameters (a repeated name keeps its first value); InvalidInput if unreadable."""
    try:
        pairs = form_params(body)
    except ValueError as exc:
        raise InvalidInput(f"the Twilio webhook body is not form data: {exc}") from exc
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)
    return params


def _nonempty(params: dict[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    return value or None


def message_sid(params: dict[str, str]) -> str | None:
    return (
        _nonempty(params, "MessageSid") or _nonempty(params, "SmsSid") or _nonempty(params, "SmsMessageSid")
    )


def status_of(params: dict[str, str]) -> str | None:
    status = _nonempty(params, "MessageStatus") or _nonempty(params, "SmsStatus")
    return status.lower() if status else None


def is_inbound_message(params: dict[str, str]) -> bool:
    status = status_of(params)
    if status is not None:
        return status in INBOUND_STATUSES
    return "Body" in params or "NumMedia" in params


def event_id(body: bytes) -> str:
    """Inbound message → its MessageSid; status callback → `{MessageSid}:{status}`, since every
    status report is a delivery of its own."""
    params = params_of(body)
    sid = message_sid(params)
    if sid is None:
        raise InvalidInput("the Twilio webhook has no MessageSid")
    if is_inbound_message(params):
        return sid[:191]
    status = status_of(params)
    if status is None:
        raise InvalidInput("the Twilio webhook has neither a message nor a MessageStatus")
    return f"{sid}:{status}"[:191]


def routing_keys(body: bytes) -> tuple[str | None, str | None]:
    """(`To` address, `MessagingServiceSid`) of a webhook, to route a shared URL to the
    integration that owns the number or the messaging service. Never raises."""
    try:
        params = params_of(body)
    except InvalidInput:
        return None, None
    return _nonempty(params, "To"), _nonempty(params, "MessagingServiceSid")


def phone_of(address: str) -> str | None:
    """`whatsapp:+15551234567` → `+15551234567`; a bare number stays; other channels → None."""
    if address.lower().startswith(WHATSAPP_PREFIX):
        return address[len(WHATSAPP_PREFIX) :]
    if address.startswith("+") or address.isdigit():
        return address
    return None


def kind_of(mime_type: str | None) -> str:
    mime = (mime_type or "").split(";", 1)[0].strip().lower()
    if mime.startswith("image/"):
        return "image"
    if mime.startswith("video/"):
        return "video"
    if mime.startswith("audio/"):
        return "audio"
    if mime in ("text/vcard", "text/x-vcard", "text/directory"):
        return "contact"
    return "document"


def _media(params: dict[str, str]) -> list[Attachment]:
    raw = params.get("NumMedia", "0").strip() or "0"
    try:
        count = int(raw)
    except ValueError as exc:
        raise InvalidInput(f"NumMedia must be a number, not {raw!r}") from exc
    if not 0 <= count <= MAX_MEDIA:
        raise InvalidInput(f"NumMedia must be between 0 and {MAX_MEDIA}")
    result = []
    for index in range(count):
        url = _nonempty(params, f"MediaUrl{index}")
        if url is None:
            raise InvalidInput(f"NumMedia is {count} but MediaUrl{index} is missing")
        mime = _nonempty(params, f"MediaContentType{index}")
        result.append(Attachment(kind=kind_of(mime), mime_type=mime, provider_file_id=url))
    return result


def _location(params: dict[str, str]) -> Attachment | None:
    latitude, longitude = _nonempty(params, "Latitude"), _nonempty(params, "Longitude")
    if latitude is None or longitude is None:
        return None
    try:
        extra: dict[str, Any] = {"latitude": float(latitude), "longitude": float(longitude)}
    except ValueError as exc:
        raise InvalidInput("Latitude and Longitude must be numbers") from exc
    for name, key in (("Address", "address"), ("Label", "label")):
        if (value := _nonempty(params, name)) is not None:
            extra[key] = value
    return Attachment(kind="location", extra=extra)


_EXTRA_FIELDS = {
    "To": "to",
    "AccountSid": "account_sid",
    "MessagingServiceSid": "messaging_service_sid",
    "WaId": "wa_id",
    "ButtonPayload": "button_payload",
    "ButtonText": "button_text",
    "NumSegments": "num_segments",
    "MessageType": "message_type",
    "Forwarded": "forwarded",
    "FrequentlyForwarded": "frequently_forwarded",
    "ReferralBody": "referral_body",
    "ReferralSourceUrl": "referral_source_url",
}


def _received(params: dict[str, str], sid: str) -> ReceivedMessage:
    sender = _nonempty(params, "From")
    if sender is None:
        raise InvalidInput("the Twilio inbound message has no From")
    profile = _nonempty(params, "ProfileName")
    attachments = _media(params)
    if (location := _location(params)) is not None:
        attachments.append(location)
    extra: dict[str, Any] = {
        key: value for name, key in _EXTRA_FIELDS.items() if (value := _nonempty(params, name)) is not None
    }
    extra["channel"] = "whatsapp" if sender.lower().startswith(WHATSAPP_PREFIX) else "sms"
    body = params.get("Body")
    return ReceivedMessage(
        provider_message_id=sid,
        chat=ChatRef(sender, ConversationKind.PRIVATE, profile),
        sender=Party(address=sender, display_name=profile, phone=phone_of(sender)),
        text=body if body else None,
        attachments=tuple(attachments),
        reply_to_provider_id=_nonempty(params, "OriginalRepliedMessageSid"),
        extra=extra,
    )


def _status(params: dict[str, str], sid: str, status: str) -> ProviderEvent:
    if status in _NOOP_STATUSES:
        return Ignored(f"Twilio status {status!r} adds nothing to a queued message")
    mapped = _STATUS_MAP.get(status)
    if mapped is None:
        return Ignored(f"Twilio status {status!r} is not handled")
    error_code = _nonempty(params, "ErrorCode")
    error_message = _nonempty(params, "ErrorMessage") or describe(error_code)
    if status == "canceled" and error_message is None:
        error_message = "the message was canceled before it was sent"
    return StatusUpdate(
        provider_message_id=sid,
        status=mapped,
        error_code=error_code,
        error_message=error_message,
    )


def parse(body: bytes) -> list[ProviderEvent]:
    params = params_of(body)
    sid = message_sid(params)
    if sid is None:
        raise InvalidInput("the Twilio webhook has no MessageSid")
    if is_inbound_message(params):
        return [_received(params, sid)]
    status = status_of(params)
    if status is None:
        raise InvalidInput("the Twilio webhook has neither a message nor a MessageStatus")
    return [_status(params, sid, status)]
