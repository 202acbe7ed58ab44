"""Telegram bots: connect by token, register the webhook (or poll), keep it healthy, disconnect.

The webhook URL we register is `/in/telegram/{public_id}`: a random public id, never the
token, and every delivery must carry the per-bot `secret_token` we chose.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from chatgate.domain.clock import Clock
from chatgate.domain.errors import (
    AuthRevoked,
    Conflict,
    InvalidInput,
    ProviderError,
    TransientProviderError,
)
from chatgate.domain.integrations import IntegrationKind, IntegrationStatus
from chatgate.providers.telegram.adapter import TelegramBotAdapter
from chatgate.providers.telegram.botapi import BotApi
from chatgate.services.integrations import IntegrationChanges, IntegrationService
from chatgate.services.provider_context import ProviderContexts
from chatgate.store.db import Database
from chatgate.store.models import Integration
from chatgate.store.repositories.integrations import IntegrationRouting
from chatgate.store.repositories.leases import LeaseStore

log = logging.getLogger(__name__)

TOKEN_SHAPE = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{20,100}$")
# The updates our parser turns into events (others are not requested at all).
ALLOWED_UPDATES = [
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "callback_query",
    "message_reaction",
    "my_chat_member",
]
MODES = ("auto", "webhook", "polling")
HEALTH_LEASE = "telegram:health-sweep"


class TelegramBots:
    def __init__(
        self,
        db: Database,
        integrations: IntegrationService,
        contexts: ProviderContexts,
        adapter: TelegramBotAdapter,
        leases: LeaseStore,
        clock: Clock,
        *,
        max_connections: int = 40,
        health_concurrency: int = 20,
    ) -> None:
        self.db = db
        self.integrations = integrations
        self.contexts = contexts
        self.adapter = adapter
        self.leases = leases
        self.clock = clock
        self.max_connections = max_connections
        self.health_concurrency = health_concurrency

    @property
    def public_base_url(self) -> str | None:
        return self.contexts.public_base_url

    def webhook_url(self, integration: Integration) -> str | None:
        if not self.public_base_url:
            return None
        return f"{self.public_base_url}/in/telegram/{integration.public_id}"

    def effective_mode(self, integration: Integration) -> str:
        return self.mode_of(integration.config)

    def mode_of(self, config: dict[str, Any]) -> str:
        mode = str(config.get("mode") or "auto")
        if mode == "auto":
            return "webhook" if self.public_base_url else "polling"
        return mode

    def _api(self, token: str) -> BotApi:
        return BotApi(self.contexts.provider_http, self.adapter.api_base, token)

    async def bot_api(self, integration: Integration) -> BotApi:
        credentials = await self.integrations.credentials(integration)
        return self._api(credentials.get("bot_token", ""))

    # --- connect ----------------------------------------------------------------------------

    def check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
        if mode == "webhook" and not self.public_base_url:
            raise InvalidInput("webhook mode needs CHATGATE_PUBLIC_BASE_URL (the URL Telegram can reach)")

    async def connect(
        self, tenant_id: str, token: str, *, name: str | None = None, mode: str = "auto"
    ) -> Integration:
        token = token.strip()
        if not TOKEN_SHAPE.match(token):
            raise InvalidInput("this is not a Telegram bot token (expected the form 123456789:AbC…)")
        self.check_mode(mode)
        self.integrations.redactor.register(token)
        try:
            me = await self._api(token).call("getMe")
        except AuthRevoked:
            raise InvalidInput(
                "Telegram refused this bot token (401 Unauthorized): it is wrong or was revoked in @BotFather"
            ) from None
        if not isinstance(me, dict) or not me.get("is_bot"):
            raise InvalidInput("this token does not belong to a bot")
        bot_id = str(me["id"])
        username = me.get("username")
        async with self.db.sessions() as session:
            existing = await IntegrationRouting(session).by_provider_key(IntegrationKind.TELEGRAM_BOT, bot_id)
        if existing is not None:
            if existing.tenant_id == tenant_id:
                raise Conflict(f"the bot @{username} is already connected here (integration {existing.id})")
            raise Conflict(f"the bot @{username} is connected to another account; disconnect it there first")
        integration = await self.integrations.create(
            tenant_id,
            kind=IntegrationKind.TELEGRAM_BOT,
            name=name or f"@{username}",
            config={"bot_id": bot_id, "username": username, "first_name": me.get("first_name"), "mode": mode},
            credentials={"bot_token": token, "secret_token": secrets.token_urlsafe(32)},
            provider_key=bot_id,
        )
        return await self.apply_mode(integration)

    async def reconnect(self, integration: Integration, token: str | None = None) -> Integration:
        """Re-register with Telegram; with a new token (after a revoke) for the same bot."""
        if token is not None:
            token = token.strip()
            if not TOKEN_SHAPE.match(token):
                raise InvalidInput("this is not a Telegram bot token (expected the form 123456789:AbC…)")
            self.integrations.redactor.register(token)
            try:
                me = await self._api(token).call("getMe")
            except AuthRevoked:
                raise InvalidInput("Telegram refused this bot token (401 Unauthorized)") from None
            if str(me.get("id")) != str(integration.config.get("bot_id")):
                raise InvalidInput(
                    f"this token belongs to another bot (@{me.get('username')}); connect it as a new integration"
                )
            credentials = await self.integrations.credentials(integration)
            await self.integrations.update(
                integration.tenant_id,
                integration.id,
                IntegrationChanges(credentials={**credentials, "bot_token": token}),
            )
        integration = await self.integrations.set_status(
            integration.tenant_id, integration.id, IntegrationStatus.PENDING, None
        )
        return await self.apply_mode(integration)

    async def apply_mode(self, integration: Integration) -> Integration:
        """Register the webhook (webhook mode) or remove it (polling mode), and set the status."""
        api = await self.bot_api(integration)
        mode = self.effective_mode(integration)
        try:
            if mode == "webhook":
                credentials = await self.integrations.credentials(integration)
                await api.call(
                    "setWebhook",
                    {
                        "url": self.webhook_url(integration),
                        "secret_token": credentials["secret_token"],
                        "allowed_updates": ALLOWED_UPDATES,
                        "max_connections": self.max_connections,
                    },
                )
            else:
                # Polling and a webhook are never active together: Telegram refuses getUpdates
                # while a webhook is set, and we must not leave a stale one behind.
                await api.call("deleteWebhook", {"drop_pending_updates": False})
        except AuthRevoked as exc:
            return await self._set(integration, IntegrationStatus.NEEDS_REAUTH, exc.message, {"mode": mode})
        except ProviderError as exc:
            return await self._set(integration, IntegrationStatus.ERROR, exc.message, {"mode": mode})
        return await self._set(
            integration,
            IntegrationStatus.ACTIVE,
            None,
            {"mode": mode, "webhook_url": self.webhook_url(integration) if mode == "webhook" else None},
        )

    async def _set(
        self,
        integration: Integration,
        status: IntegrationStatus,
        reason: str | None,
        provider: dict[str, Any],
    ) -> Integration:
        provider = {**integration.provider_status, **provider, "checked_at": self.clock().isoformat()}
        return await self.integrations.set_status(
            integration.tenant_id, integration.id, status, reason, provider_status=provider
        )

    # --- health -----------------------------------------------------------------------------

    async def check(self, integration: Integration) -> Integration:
        """getWebhookInfo: repair what is ours to repair, report Telegram's view in provider_status."""
        if integration.status in (IntegrationStatus.DISABLED, IntegrationStatus.NEEDS_REAUTH):
            return integration
        api = await self.bot_api(integration)
        mode = self.effective_mode(integration)
        expected = self.webhook_url(integration) if mode == "webhook" else ""
        try:
            info = await api.call("getWebhookInfo")
        except AuthRevoked as exc:
            return await self._set(integration, IntegrationStatus.NEEDS_REAUTH, exc.message, {"mode": mode})
        except TransientProviderError as exc:
            return await self._set(
                integration,
                IntegrationStatus(integration.status),
                integration.status_reason,
                {"last_check_error": exc.message},
            )
        report: dict[str, Any] = {
            "mode": mode,
            "webhook_url": info.get("url") or None,
            "pending_update_count": info.get("pending_update_count", 0),
            "last_error_message": info.get("last_error_message"),
            "last_error_date": info.get("last_error_date"),
            "last_check_error": None,
        }
        repair = None
        if (info.get("url") or "") != (expected or ""):
            repair = "the webhook URL registered at Telegram was not ours"
        elif mode == "webhook" and _refused_by_us(info, integration.provider_status):
            repair = "Telegram's last delivery was refused by us (the secret may be out of date)"
        if repair is not None:
            log.warning("repairing the webhook of integration %s: %s", integration.id, repair)
            report["repaired"] = repair
            report["repaired_at_epoch"] = int(self.clock().timestamp())
            repaired = await self.apply_mode(integration)
            if repaired.status == IntegrationStatus.ACTIVE:
                report["webhook_url"] = expected or None  # Telegram's view after the repair
            return await self._set(
                repaired, IntegrationStatus(repaired.status), repaired.status_reason, report
            )
        status = (
            IntegrationStatus.ACTIVE
            if integration.status == IntegrationStatus.ERROR
            else IntegrationStatus(integration.status)
        )
        return await self._set(
            integration,
            status,
            None if status == IntegrationStatus.ACTIVE else integration.status_reason,
            report,
        )

    async def check_all(self, owner: str) -> int:
        """One sweep over every active or failing bot, one process at a time (a lease)."""
        ttl = timedelta(minutes=30)
        if not await self.leases.acquire(HEALTH_LEASE, owner, self.clock(), ttl):
            return 0
        checked = 0
        gate = asyncio.Semaphore(self.health_concurrency)

        async def one(integration: Integration) -> None:
            async with gate:
                try:
                    await self.check(integration)
                except Exception:
                    log.exception("health check of integration %s failed", integration.id)

        try:
            after: str | None = None
            while True:
                async with self.db.sessions() as session:
                    page = await IntegrationRouting(session).of_kind(
                        IntegrationKind.TELEGRAM_BOT, ["active", "error"], after_id=after
                    )
                if not page:
                    break
                await asyncio.gather(*(one(i) for i in page))
                checked += len(page)
                after = page[-1].id
                await self.leases.acquire(HEALTH_LEASE, owner, self.clock(), ttl)
        finally:
            await self.leases.release(HEALTH_LEASE, owner)
        return checked

    # --- disconnect -------------------------------------------------------------------------

    async def disconnect(self, integration: Integration) -> None:
        """Best effort: tell Telegram to stop delivering; the integration goes either way."""
        try:
            api = await self.bot_api(integration)
            await api.call("deleteWebhook", {"drop_pending_updates": False})
        except ProviderError as exc:
            log.info("deleteWebhook for integration %s failed: %s", integration.id, exc.message)


def _refused_by_us(info: dict[str, Any], previous: dict[str, Any]) -> bool:
    """Our endpoint answered 401/403 since the last repair (a repaired error stays reported)."""
    message = str(info.get("last_error_message") or "")
    when = int(info.get("last_error_date") or 0)
    return ("401" in message or "403" in message) and when > int(previous.get("repaired_at_epoch") or 0)
