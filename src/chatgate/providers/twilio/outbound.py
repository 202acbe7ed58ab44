"""The form of `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (pure functions).

Field names are those of the `CreateMessageRequest` schema in Twilio's OpenAPI description
(`chatgate.sandbox.specs.TWILIO_MESSAGES_API`); a test checks every name we send against it and
that each form has a `To`, one of `From` / `MessagingServiceSid`, and one of `Body` /
`MediaUrl` / `ContentSid` (the two rules the schema states in prose only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chatgate.domain.errors import ContentRejected, PermanentProviderError, RecipientInvalid
from chatgate.providers.base import OutboundMessage

API_VERSION = "2010-04-01"
WHATSAPP_PREFIX = "whatsapp:"
CHANNELS = ("whatsapp", "sms")
MAX_BODY = 1600  # Twilio refuses longer bodies (error 21617)
MAX_MEDIA = {"sms": 10, "whatsapp": 1}  # MMS: up to 10 MediaUrl; WhatsApp: one per message
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")

# `message.options` a caller may pass through, by our snake_case name → Twilio's field name.
OPTION_FIELDS = {
    "validity_period": "ValidityPeriod",
    "shorten_urls": "ShortenUrls",
    "smart_encoded": "SmartEncoded",
    "send_as_mms": "SendAsMms",
    "force_delivery": "ForceDelivery",
    "provide_feedback": "ProvideFeedback",
    "persistent_action": "PersistentAction",
    "schedule_type": "ScheduleType",
    "send_at": "SendAt",
    "risk_check": "RiskCheck",
    "content_retention": "ContentRetention",
    "address_retention": "AddressRetention",
    "traffic_type": "TrafficType",
    "attempt": "Attempt",
}

Form = list[tuple[str, str]]


@dataclass(frozen=True)
class Sender:
    """Who sends: a number (`from`) and/or a messaging service, on one channel."""

    account_sid: str
    from_address: str | None
    messaging_service_sid: str | None
    channel: str

    @property
    def key(self) -> str:
        """The sender a rate budget belongs to."""
        return self.from_address or self.messaging_service_sid or "-"


def sender_from_config(config: Mapping[str, Any], credentials: Mapping[str, str] | None = None) -> Sender:
    """The integration's sender; PermanentProviderError when the configuration cannot send."""
    account_sid = str(config.get("account_sid") or (credentials or {}).get("account_sid") or "")
    if not ACCOUNT_SID.match(account_sid):
        raise PermanentProviderError(
            "the Twilio integration needs an account_sid (AC followed by 32 hex digits)"
        )
    from_address = str(config.get("from") or "").strip() or None
    service = str(config.get("messaging_service_sid") or "").strip() or None
    if from_address is None and service is None:
        raise PermanentProviderError(
            "the Twilio integration needs a 'from' address or a messaging_service_sid"
        )
    if service is not None and not SERVICE_SID.match(service):
        raise PermanentProviderError("messaging_service_sid must be MG followed by 32 hex digits")
    channel = str(config.get("channel") or "").strip().lower()
    if not channel:
        whatsapp = from_address is not None and from_address.lower().startswith(WHATSAPP_PREFIX)
        channel = "whatsapp" if whatsapp else "sms"
    if channel not in CHANNELS:
        raise PermanentProviderError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    if channel == "whatsapp" and from_address and not from_address.lower().startswith(WHATSAPP_PREFIX):
        from_address = WHATSAPP_PREFIX + from_address
    return Sender(account_sid, from_address, service, channel)


def to_address(recipient: str, sender: Sender) -> str:
    """The `To` of a send: WhatsApp recipients get the `whatsapp:` prefix when they lack it."""
    address = recipient.strip()
    if not address:
        raise RecipientInvalid("the recipient address is empty")
    whatsapp = address.lower().startswith(WHATSAPP_PREFIX)
    if sender.channel == "whatsapp":
        return address if whatsapp else WHATSAPP_PREFIX + address
    if whatsapp:
        raise RecipientInvalid(f"{address} is a WhatsApp address but this integration sends SMS")
    return address


def messages_url(api_base: str, account_sid: str) -> str:
    return f"{api_base.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages.json"


def account_url(api_base: str, account_sid: str) -> str:
    return f"{api_base.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}.json"


def status_callback_url(public_base_url: str | None, public_id: str) -> str | None:
    """Where Twilio reports this integration's message statuses (our inbound route)."""
    if not public_base_url:
        return None
    return f"{public_base_url.rstrip('/')}/in/twilio/{public_id}"


def media_urls(attachments: Sequence[Mapping[str, Any]], public_base_url: str | None) -> list[str]:
    """One public URL per attachment: Twilio fetches media itself, so it needs URLs it can reach.

    An upload (`media_id`) is offered as `{public_base_url}/v1/media/{id}`. That route requires
    our API credentials, which Twilio does not have: a real deployment needs a signed,
    short-lived, unauthenticated media link here. Without a public base URL there is no URL at all.
    """
    urls = []
    for index, attachment in enumerate(attachments):
        kind = str(attachment.get("kind") or "document")
        if kind in ("location", "contact"):
            raise ContentRejected(f"Twilio cannot send a {kind} attachment (attachment {index})")
        url, media_id = attachment.get("url"), attachment.get("media_id")
        if isinstance(url, str) and url:
            if not url.lower().startswith(("https://", "http://")):
                raise ContentRejected(f"attachment {index}: Twilio fetches media over HTTP(S) only")
            urls.append(url)
        elif isinstance(media_id, str) and media_id:
            if not public_base_url:
                raise ContentRejected(
                    "Twilio fetches media from a public URL: sending an upload needs the gateway's "
                    "public base URL to be configured"
                )
            urls.append(f"{public_base_url.rstrip('/')}/v1/media/{media_id}")
        else:
            raise ContentRejected(f"attachment {index} has neither a url nor a media_id")
    return urls


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _options(options: Mapping[str, Any]) -> Form:
    form: Form = []
    for name, field in OPTION_FIELDS.items():
        value = options.get(name)
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        form.extend((field, _form_value(item)) for item in values)
    return form


def _template(template: Mapping[str, Any]) -> Form:
    content_sid = template.get("content_sid")
    if not isinstance(content_sid, str) or not CONTENT_SID.match(content_sid):
        raise ContentRejected(
            "template.content_sid must be a Twilio Content SID (HX followed by 32 hex digits)"
        )
    form: Form = [("ContentSid", content_sid)]
    variables = template.get("variables")
    if variables:
        if not isinstance(variables, Mapping):
            raise ContentRejected("template.variables must be an object of placeholder → value")
        form.append(("ContentVariables", json.dumps({str(k): _form_value(v) for k, v in variables.items()})))
    return form


def message_form(
    message: OutboundMessage,
    sender: Sender,
    *,
    public_base_url: str | None = None,
    status_callback: str | None = None,
) -> Form:
    """The create-message form for one outbound message; ContentRejected when Twilio cannot
    carry it (too long, too many media, buttons without a Content template…)."""
    form: Form = [("To", to_address(message.recipient, sender))]
    if sender.from_address:
        form.append(("From", sender.from_address))
    if sender.messaging_service_sid:
        form.append(("MessagingServiceSid", sender.messaging_service_sid))
    if message.template:
        if message.attachments:
            raise ContentRejected(
                "a Content template (ContentSid) carries its own media; drop the attachments"
            )
        form.extend(_template(message.template))
    else:
        if message.buttons:
            raise ContentRejected(
                "Twilio sends buttons only through a Content template (template.content_sid)"
            )
        text = message.text or ""
        if len(text) > MAX_BODY:
            raise ContentRejected(
                f"Twilio bodies are limited to {MAX_BODY} characters, this one has {len(text)}"
            )
        urls = media_urls(message.attachments, public_base_url)
        limit = MAX_MEDIA[sender.channel]
        if len(urls) > limit:
            raise ContentRejected(f"Twilio {sender.channel} messages carry at most {limit} media")
        if not text and not urls:
            raise ContentRejected("the message has no text, media or template to send")
        if text:
            form.append(("Body", text))
        form.extend(("MediaUrl", url) for url in urls)
    if status_callback:
        form.append(("StatusCallback", status_callback))
    form.extend(_options(message.options))
    return form
