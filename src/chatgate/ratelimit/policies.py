"""Provider send budgets: defaults from the providers' published limits, overridable.

Adapters name the scopes a send spends from (`bot`, `chat`, `group`, `number`…); the budget of
each scope comes from here. Operators override any of them with `CHATGATE_RATE_LIMIT_POLICIES`,
for example `{"telegram_bot": {"chat": [2, 4]}}` (rate per second, burst).
"""

from __future__ import annotations

from collections.abc import Mapping

from chatgate.domain.errors import ConfigurationError
from chatgate.ratelimit.base import Limit

DEFAULT_POLICIES: dict[str, dict[str, Limit]] = {
    # Telegram Bot API FAQ: about 1 message/s per chat (short bursts tolerated),
    # 20 messages/minute per group, about 30 messages/s per bot overall.
    # The send worker spends these through `within_budget`: no sliding second sees more than
    # floor(rate), so a burst (capped at that) only lowers the sustained rate a little.
    "telegram_bot": {"bot": Limit(30, 3), "chat": Limit(1, 3), "group": Limit(20 / 60, 3)},
    "telegram_user": {"account": Limit(20, 2), "chat": Limit(1, 3), "group": Limit(20 / 60, 3)},
    # WhatsApp Cloud API: 80 messages/s per business phone number by default.
    "whatsapp_cloud": {"number": Limit(80, 8)},
    # Twilio: 10 messages/s (text) and about 1.5 messages/s with media, per sender.
    "twilio": {"sender": Limit(10, 1), "sender_media": Limit(1.5, 1)},
}


class RatePolicies:
    def __init__(
        self, overrides: Mapping[str, Mapping[str, list[float] | tuple[float, float]]] | None = None
    ) -> None:
        self._table = {kind: dict(scopes) for kind, scopes in DEFAULT_POLICIES.items()}
        for kind, scopes in (overrides or {}).items():
            for scope, pair in scopes.items():
                if len(pair) != 2 or pair[0] <= 0 or pair[1] < 1:
                    raise ConfigurationError(
                        f"rate policy {kind}.{scope} must be [rate_per_second > 0, burst >= 1]"
                    )
                self._table.setdefault(kind, {})[scope] = Limit(float(pair[0]), int(pair[1]))

    def limit(self, kind: str, scope: str) -> Limit:
        try:
            return self._table[kind][scope]
        except KeyError as exc:
            raise ConfigurationError(f"no rate policy for {kind}.{scope}") from exc

    def table(self) -> dict[str, dict[str, Limit]]:
        return {kind: dict(scopes) for kind, scopes in self._table.items()}
