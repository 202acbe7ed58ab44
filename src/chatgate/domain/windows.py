"""WhatsApp's 24-hour customer-service window: free-form messages only within 24 hours of the
customer's last message; outside it, only approved templates.

The window belongs to a conversation, so a send's `to` must name the conversation the
customer's messages landed in: `recipient_address` spells it the way inbound messages do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from chatgate.domain.messages import ConversationKind

CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{5,30}")
_TWILIO_WHATSAPP = "whatsapp:"


def has_window(kind: str, config: Mapping[str, Any]) -> bool:
    if kind == "whatsapp_cloud":
        return True
    if kind == "twilio":
        channel = str(config.get("channel") or "")
        return channel == "whatsapp" or str(config.get("from") or "").startswith("whatsapp:")
    return False


def window_problem(last_inbound: datetime | None, now: datetime) -> str | None:
    """Why a free-form message cannot go out now, or None when the window is open."""
    if last_inbound is None:
        return (
            "the customer has not written to this number yet, so WhatsApp only allows an approved "
            "template: send it with 'template'"
        )
    if now - last_inbound >= CUSTOMER_SERVICE_WINDOW:
        hours = (now - last_inbound).total_seconds() / 3600
        return (
            f"the 24-hour customer-service window closed (the customer last wrote {hours:.0f} hours ago); "
            "WhatsApp only allows an approved template now: send it with 'template'"
        )
    return None


def recipient_address(kind: str, config: Mapping[str, Any], to: str) -> str:
    """The chat address a send's `to` means, spelled as inbound messages record it.

    WhatsApp Cloud chats are wa_ids, digits only (`+1 555-010-0199` → `15550100199`); Twilio's
    WhatsApp chats are `whatsapp:+15550100199`. Anything that is not a phone number is kept.
    """
    address = to.strip()
    if kind == "whatsapp_cloud" and _PHONE.fullmatch(address):
        return _digits(address)
    if kind == "twilio" and has_window(kind, config):
        bare = address[len(_TWILIO_WHATSAPP) :] if address.lower().startswith(_TWILIO_WHATSAPP) else address
        if _PHONE.fullmatch(bare):
            return f"{_TWILIO_WHATSAPP}+{_digits(bare)}"
    return address


def recipient_kind(kind: str, address: str) -> ConversationKind:
    """What kind of chat a send's address names: Telegram's negative chat ids are groups and
    channels; every other address is a private chat."""
    if kind in ("telegram_bot", "telegram_user") and address.startswith("-"):
        return ConversationKind.GROUP
    return ConversationKind.PRIVATE


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)
