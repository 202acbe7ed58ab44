"""The accounts this process runs right now; the send path looks their clients up here."""

from __future__ import annotations

from chatgate.providers.telegram_user.client import AccountClient


class LiveAccounts:
    def __init__(self) -> None:
        self.clients: dict[str, AccountClient] = {}

    def get(self, integration_id: str) -> AccountClient | None:
        return self.clients.get(integration_id)
