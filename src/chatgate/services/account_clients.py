"""Makes `AccountClient`s: Telethon in production, a fake in tests (injected into the Container)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatgate.config import Settings
from chatgate.domain.errors import ConfigurationError, InvalidInput
from chatgate.providers.telegram_user.client import AccountClient


@dataclass(frozen=True)
class AccountSpec:
    """What one client needs: the stored session (None before login) and the app credentials
    (a tenant's own, or None for the operator's from settings)."""

    session: str | None
    api_id: int | None = None
    api_hash: str | None = None
    # Where the previous client of this session stood in the update sequence (see
    # `client.UpdateStateful`): the new client catches up from there. None: from now on.
    update_state: dict[str, Any] | None = None


AccountClientFactory = Callable[[AccountSpec], AccountClient]


def parse_dc(value: str | None) -> tuple[int, str, int] | None:
    if not value:
        return None
    try:
        dc_id, ip, port = (part.strip() for part in value.split(","))
        return int(dc_id), ip, int(port)
    except ValueError:
        raise ConfigurationError("CHATGATE_TELEGRAM_MTPROTO_DC must be 'DC_ID,IP,PORT'") from None


def telethon_factory(settings: Settings) -> AccountClientFactory:
    dc = parse_dc(settings.telegram_mtproto_dc)

    def make(spec: AccountSpec) -> AccountClient:
        from chatgate.providers.telegram_user.telethon_client import TelethonAccountClient

        api_id = spec.api_id or settings.telegram_api_id
        api_hash = spec.api_hash or (
            settings.telegram_api_hash.get_secret_value() if settings.telegram_api_hash else None
        )
        if not api_id or not api_hash:
            raise InvalidInput(
                "Telegram user accounts need an api_id and api_hash (my.telegram.org): set "
                "CHATGATE_TELEGRAM_API_ID and CHATGATE_TELEGRAM_API_HASH, or give them with the login"
            )
        return TelethonAccountClient(
            api_id=api_id,
            api_hash=api_hash,
            session_string=spec.session,
            dc=dc,
            rsa_public_key_pem=settings.telegram_rsa_public_key,
            test_mode=settings.telegram_test_mode,
            update_state=spec.update_state,
        )

    return make
