"""Integration kinds and the status machine every integration follows."""

from __future__ import annotations

from enum import StrEnum


class IntegrationKind(StrEnum):
    TELEGRAM_BOT = "telegram_bot"
    TELEGRAM_USER = "telegram_user"
    TELEGRAM_CHANNEL = "telegram_channel"
    WHATSAPP_CLOUD = "whatsapp_cloud"
    TWILIO = "twilio"
    GOOGLE_CALENDAR = "google_calendar"
    WEBHOOK = "webhook"


class IntegrationStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    ERROR = "error"
    NEEDS_REAUTH = "needs_reauth"
    DISABLED = "disabled"


# pending → active → error | needs_reauth | disabled, and back to pending on reconnect.
ALLOWED_TRANSITIONS: dict[IntegrationStatus, frozenset[IntegrationStatus]] = {
    IntegrationStatus.PENDING: frozenset(
        {
            IntegrationStatus.ACTIVE,
            IntegrationStatus.ERROR,
            IntegrationStatus.NEEDS_REAUTH,
            IntegrationStatus.DISABLED,
        }
    ),
    IntegrationStatus.ACTIVE: frozenset(
        {
            IntegrationStatus.ERROR,
            IntegrationStatus.NEEDS_REAUTH,
            IntegrationStatus.DISABLED,
            IntegrationStatus.PENDING,
        }
    ),
    IntegrationStatus.ERROR: frozenset(
        {
            IntegrationStatus.ACTIVE,
            IntegrationStatus.PENDING,
            IntegrationStatus.DISABLED,
            IntegrationStatus.NEEDS_REAUTH,
        }
    ),
    IntegrationStatus.NEEDS_REAUTH: frozenset({IntegrationStatus.PENDING, IntegrationStatus.DISABLED}),
    IntegrationStatus.DISABLED: frozenset({IntegrationStatus.PENDING}),
}


def can_transition(current: IntegrationStatus, target: IntegrationStatus) -> bool:
    return current == target or target in ALLOWED_TRANSITIONS[current]
