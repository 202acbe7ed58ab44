"""WhatsApp's 24-hour customer-service window: free-form messages only within 24 hours of the
customer's last message; outside it, only approved templates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)


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
