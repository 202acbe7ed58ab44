"""Channels and groups a bot manages: connect (with a rights check), list, post, remove."""

from __future__ import annotations

from chatgate.domain.channels import can_post, channel_kind, missing_right
from chatgate.domain.clock import Clock
from chatgate.domain.errors import InvalidInput, RecipientInvalid
from chatgate.domain.integrations import IntegrationKind
from chatgate.domain.messages import ConversationKind
from chatgate.services.telegram_bots import TelegramBots
from chatgate.store.db import Database
from chatgate.store.models import Channel
from chatgate.store.pagination import Page
from chatgate.store.repositories.channels import ChannelRepository
from chatgate.store.repositories.integrations import IntegrationRepository

_RIGHTS_PREFIX = "can_"


def _chat_ref(value: str) -> str:
    value = value.strip()
    if value.startswith("https://t.me/"):
        value = "@" + value.removeprefix("https://t.me/").strip("/")
    if value.startswith("@") and len(value) > 1:
        return value
    if value.lstrip("-").isdigit():
        return value
    raise InvalidInput("give the channel or group as @username, a t.me link, or its numeric id")


class ChannelService:
    def __init__(self, db: Database, bots: TelegramBots, clock: Clock) -> None:
        self.db = db
        self.bots = bots
        self.clock = clock

    async def connect(self, tenant_id: str, integration_id: str, chat: str) -> Channel:
        """Check with getChat / getChatMember that the bot may post there, then remember it."""
        reference = _chat_ref(chat)
        async with self.db.sessions() as session:
            integration = await IntegrationRepository(session, tenant_id).get(integration_id)
        if integration.kind == IntegrationKind.TELEGRAM_USER:
            return await self._connect_account_channel(tenant_id, integration.id, reference)
        if integration.kind != IntegrationKind.TELEGRAM_BOT:
            raise InvalidInput("channels and groups are connected through a Telegram bot integration")
        api = await self.bots.bot_api(integration)
        try:
            info = await api.call("getChat", {"chat_id": reference})
        except RecipientInvalid:
            raise InvalidInput(
                f"Telegram does not know the chat {reference}, or the bot is not a member of it"
            ) from None
        if info.get("type") == "private":
            raise InvalidInput(f"{reference} is a private chat, not a channel or group")
        kind = ConversationKind.CHANNEL if info.get("type") == "channel" else ConversationKind.GROUP
        bot_id = integration.config.get("bot_id") or (await api.call("getMe"))["id"]
        member = await api.call("getChatMember", {"chat_id": info["id"], "user_id": int(bot_id)})
        status = str(member.get("status"))
        rights = {
            k: bool(v) for k, v in member.items() if k.startswith(_RIGHTS_PREFIX) and isinstance(v, bool)
        }
        problem = missing_right(kind, status, rights)
        if problem is not None:
            raise InvalidInput(f"cannot post to {info.get('title') or reference}: {problem}")
        async with self.db.transaction() as session:
            channel, _ = await ChannelRepository(session, tenant_id).upsert(
                integration.id,
                str(info["id"]),
                self.clock(),
                kind=channel_kind(kind),
                title=info.get("title"),
                username=info.get("username"),
                member_status=status,
                rights=rights,
                can_post=can_post(kind, status, rights),
                connected=True,
            )
        return channel

    async def _connect_account_channel(self, tenant_id: str, integration_id: str, reference: str) -> Channel:
        """An account's channels are synced by the worker that runs it (only it may talk to
        Telegram with the session): connect one of those, if the account may post there."""
        async with self.db.transaction() as session:
            repo = ChannelRepository(session, tenant_id)
            page = await repo.list(cursor=None, limit=200, integration_id=integration_id)
            wanted = reference.lstrip("@").lower()
            found = next(
                (c for c in page.items if c.external_id == reference or (c.username or "").lower() == wanted),
                None,
            )
            if found is None:
                raise InvalidInput(
                    f"the account administers no channel or group {reference} (the list is synced "
                    "while the account runs: GET /v1/channels?integration_id=…)"
                )
            if not found.can_post:
                raise InvalidInput(
                    f"cannot post to {found.title or reference}: the account lacks the 'post_messages' right"
                )
            found.connected = True
            found.updated_at = self.clock()
        return found

    async def list(
        self,
        tenant_id: str,
        *,
        cursor: str | None,
        limit: int,
        integration_id: str | None,
        connected: bool | None,
    ) -> Page[Channel]:
        async with self.db.sessions() as session:
            return await ChannelRepository(session, tenant_id).list(
                cursor=cursor, limit=limit, integration_id=integration_id, connected=connected
            )

    async def get(self, tenant_id: str, channel_id: str) -> Channel:
        async with self.db.sessions() as session:
            return await ChannelRepository(session, tenant_id).get(channel_id)

    async def remove(self, tenant_id: str, channel_id: str) -> None:
        async with self.db.transaction() as session:
            channel = await ChannelRepository(session, tenant_id).get(channel_id)
            await session.delete(channel)
