"""Which adapter serves which integration kind. Adding a provider = one line here."""

from __future__ import annotations

from chatgate.config import Settings
from chatgate.domain.errors import InvalidInput
from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.base import ProviderAdapter
from chatgate.providers.telegram.adapter import TelegramBotAdapter
from chatgate.providers.telegram_user.adapter import TelegramUserAdapter
from chatgate.providers.telegram_user.live import LiveAccounts
from chatgate.providers.twilio.adapter import TwilioAdapter
from chatgate.providers.webhook.adapter import WebhookAdapter
from chatgate.providers.whatsapp_cloud.adapter import WhatsAppCloudAdapter
from chatgate.ratelimit.policies import RatePolicies


class AdapterRegistry:
    def __init__(self, adapters: list[ProviderAdapter]) -> None:
        # Keyed by the kind's string (IntegrationKind is a StrEnum, equal to its value).
        self._adapters: dict[str, ProviderAdapter] = {str(a.kind): a for a in adapters}

    def get(self, kind: IntegrationKind | str) -> ProviderAdapter:
        adapter = self._adapters.get(kind)
        if adapter is None:
            raise InvalidInput(f"integration kind '{kind}' has no provider adapter yet")
        return adapter

    def all(self) -> list[ProviderAdapter]:
        return list(self._adapters.values())

    def supports(self, kind: str) -> bool:
        return kind in self._adapters


def default_registry(
    settings: Settings | None = None,
    policies: RatePolicies | None = None,
    live_accounts: LiveAccounts | None = None,
) -> AdapterRegistry:
    settings = settings or Settings()
    return AdapterRegistry(
        [
            WebhookAdapter(),
            TelegramBotAdapter(settings.telegram_api_base, policies),
            WhatsAppCloudAdapter(settings.graph_api_base, settings.graph_api_version, policies),
            TwilioAdapter(settings.twilio_api_base, policies),
            TelegramUserAdapter(live_accounts or LiveAccounts(), policies),
        ]
    )
