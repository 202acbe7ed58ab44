"""The Telegram user-account adapter: updates arrive from the live client (no webhooks), sends go
through the client of the worker that owns the account."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from chatgate.domain.errors import (
    InvalidInput,
    PermanentProviderError,
    ProviderRateLimited,
    RunsElsewhere,
    Unauthenticated,
)
from chatgate.domain.inbound import ProviderEvent
from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.base import Bucket, InboundRequest, IntegrationContext, OutboundMessage, SendResult
from chatgate.providers.telegram_user.client import AccountClient
from chatgate.providers.telegram_user.parsing import parse_payload
from chatgate.ratelimit.policies import RatePolicies


class LiveClients(Protocol):
    def get(self, integration_id: str) -> AccountClient | None: ...


class TelegramUserAdapter:
    kind = IntegrationKind.TELEGRAM_USER

    def __init__(self, live: LiveClients, policies: RatePolicies | None = None) -> None:
        self.live = live
        self.policies = policies or RatePolicies()

    # Inbound: stored by the account runtime, never through an HTTP endpoint.

    def verify_inbound(self, request: InboundRequest, ctx: IntegrationContext) -> None:
        raise Unauthenticated("Telegram accounts receive updates from their live session, not by webhook")

    def event_id(self, request: InboundRequest) -> str:
        raise InvalidInput("Telegram accounts have no webhook events")

    def parse_inbound(self, body: bytes, headers: Mapping[str, str]) -> list[ProviderEvent]:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise InvalidInput("a stored account update must be a JSON object")
        return parse_payload(payload)

    # Outbound

    def _account_bucket(self, ctx: IntegrationContext) -> str:
        return f"tgu:{ctx.integration.id}"

    def send_buckets(self, message: OutboundMessage, ctx: IntegrationContext) -> list[Bucket]:
        chat = message.recipient
        scope = "group" if chat.startswith("-") else "chat"
        return [
            Bucket(f"tgu:{ctx.integration.id}:{chat}", self.policies.limit("telegram_user", scope)),
            # Last: a FloodWait without a named bucket pauses the whole account.
            Bucket(self._account_bucket(ctx), self.policies.limit("telegram_user", "account")),
        ]

    async def send(self, message: OutboundMessage, ctx: IntegrationContext) -> SendResult:
        client = self.live.get(ctx.integration.id)
        if client is None:
            # The account runs in another worker (or is starting): try again shortly.
            raise RunsElsewhere("this account is live in another worker; the send is retried there")
        reply_to = None
        if message.reply_to_provider_id:
            _, _, number = message.reply_to_provider_id.rpartition(":")
            reply_to = int(number) if number.isdigit() else None
        peer: int | str = (
            int(message.recipient) if message.recipient.lstrip("-").isdigit() else message.recipient
        )
        file = name = mime = None
        if message.attachments:
            if len(message.attachments) > 1:
                raise PermanentProviderError("a Telegram account sends one attachment per message")
            attachment = message.attachments[0]
            if not attachment.get("media_id") or ctx.load_media is None:
                raise PermanentProviderError("Telegram accounts send uploaded files (media_id), not URLs")
            media = await ctx.load_media(str(attachment["media_id"]))
            file, name, mime = media.content, media.file_name, media.mime_type
        try:
            sent = await client.send_message(
                peer, message.text or "", reply_to=reply_to, file=file, file_name=name, mime_type=mime
            )
        except ProviderRateLimited as exc:
            exc.details.setdefault("bucket", self._account_bucket(ctx))  # FloodWait pauses the account
            raise
        detail = {} if str(sent.chat_id) == message.recipient else {"recipient_moved_to": str(sent.chat_id)}
        return SendResult(sent.provider_message_id, detail)

    async def mark_read(self, provider_message_id: str, ctx: IntegrationContext) -> None:
        client = self.live.get(ctx.integration.id)
        if client is None:
            raise RunsElsewhere("this account is live in another worker; try again")
        chat, _, number = provider_message_id.rpartition(":")
        await client.mark_read(int(chat), int(number))
