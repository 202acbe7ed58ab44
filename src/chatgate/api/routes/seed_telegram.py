"""The seeds' Telegram bot and channel endpoints, as thin facades over the native API.

Seed 000: `POST /api/integrations/telegram/connect/` and its token-in-URL webhook path.
Seed 001: `/api/integrations/telegram/bots` and `/api/integrations/telegram/channels`.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from chatgate.api.deps import ContainerDep, Manager, Reader, Sender
from chatgate.api.errors import status_for
from chatgate.api.routes.channels import ChannelPostBody, post_to_channel
from chatgate.api.routes.messages import Accepted, AttachmentIn, Button, message_out
from chatgate.api.schemas import Out, StrictBody
from chatgate.domain.errors import ChatgateError, InvalidInput, NotFound
from chatgate.domain.integrations import IntegrationKind, IntegrationStatus
from chatgate.providers.base import InboundRequest
from chatgate.services.sending import SendRequest
from chatgate.store.models import Channel, Integration
from chatgate.store.repositories.integrations import IntegrationRouting

router = APIRouter(prefix="/api/integrations", tags=["seed: telegram bots"])


class SeedBotOut(Out):
    id: str
    integration_type: str = "telegram"
    username: str | None
    bot_token: str = Field(description="Masked; the token is never returned")
    is_active: bool
    status: str
    status_reason: str | None
    webhook_path: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Integration) -> SeedBotOut:
        return cls(
            id=row.id,
            username=row.config.get("username"),
            bot_token=str(row.credentials_masked.get("bot_token", "••••")),
            is_active=row.status == IntegrationStatus.ACTIVE,
            status=row.status,
            status_reason=row.status_reason,
            webhook_path=f"/in/telegram/{row.public_id}",
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class SeedChannelOut(Out):
    id: str
    bot_id: str
    channel_id: int | str
    title: str | None
    username: str | None
    type: str = Field(description="channel or group")
    is_active: bool
    can_post: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Channel) -> SeedChannelOut:
        external: int | str = (
            int(row.external_id) if row.external_id.lstrip("-").isdigit() else row.external_id
        )
        return cls(
            id=row.id,
            bot_id=row.integration_id,
            channel_id=external,
            title=row.title,
            username=row.username,
            type=row.kind,
            is_active=row.connected and row.member_status not in ("left", "kicked"),
            can_post=row.can_post,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class BotConnect(StrictBody):
    bot_token: str = Field(min_length=10, max_length=200)
    name: str | None = Field(None, min_length=1, max_length=200)


class BotSend(StrictBody):
    chat_id: int | str = Field(description="Telegram chat id or @channelusername")
    text: str | None = Field(None, max_length=65_536)
    parse_mode: str | None = Field(None, pattern="^(HTML|Markdown|MarkdownV2)$")
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=10)
    buttons: list[list[Button]] = Field(default_factory=list, max_length=20)
    reply_to_message_id: str | None = None


class ChannelCreate(StrictBody):
    bot_id: str | None = Field(None, description="The bot integration; optional when you have exactly one")
    channel_id: int | str | None = Field(None, description="Numeric id or @username")
    username: str | None = Field(None, max_length=100, description="@username (alternative to channel_id)")


async def _bot(container: ContainerDep, tenant_id: str, bot_id: str) -> Integration:
    integration = await container.integrations.get(tenant_id, bot_id)
    if integration.kind != IntegrationKind.TELEGRAM_BOT:
        raise NotFound(f"bot '{bot_id}' does not exist")
    return integration


# --- seed 000 --------------------------------------------------------------------------------


@router.post(
    "/telegram/connect/",
    name="seed.telegram_connect_bot",
    response_model=SeedBotOut,
    status_code=201,
    summary="Seed 000: connect a Telegram bot by token",
)
async def connect_bot(
    body: BotConnect, principal: Manager, container: ContainerDep, request: Request
) -> SeedBotOut:
    integration = await container.telegram_bots.connect(principal.tenant_id, body.bot_token, name=body.name)
    request.state.audit_target = ("integration", integration.id)
    return SeedBotOut.of(integration)


@router.post(
    "/webhooks/telegram/{bot_token}/",
    name="seed.telegram_token_webhook",
    summary="Seed 000: Telegram webhook with the token in the URL (off unless the operator enables it)",
    responses={404: {"description": "Disabled, or no such bot"}, 401: {"description": "Wrong secret header"}},
)
async def token_in_url_webhook(bot_token: str, request: Request, container: ContainerDep) -> Response:
    # Errors are answered here, without the path: the path holds the token.
    try:
        if not container.settings.telegram_token_in_url_webhooks:
            raise NotFound(
                "this endpoint is disabled; use the /in/telegram/{public_id} URL registered for you"
            )
        container.redactor.register(bot_token)
        bot_id = bot_token.split(":", 1)[0]
        async with container.db.sessions() as session:
            integration = await IntegrationRouting(session).by_provider_key(
                IntegrationKind.TELEGRAM_BOT, bot_id
            )
        credentials = await container.integrations.credentials(integration) if integration else {}
        known = credentials.get("bot_token", "")
        if integration is None or not hmac.compare_digest(known.encode(), bot_token.encode()):
            raise NotFound("no such bot")
        inbound = InboundRequest(
            method="POST",
            url="",
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        outcome = await container.inbound.receive(
            IntegrationKind.TELEGRAM_BOT, integration.public_id, inbound
        )
    except ChatgateError as exc:
        status, title = status_for(exc)
        return JSONResponse({"title": title, "status": status, "detail": exc.message}, status_code=status)
    return JSONResponse(outcome.body, status_code=outcome.status)


@router.api_route(
    "/webhooks/telegram/{bot_token}/",
    methods=["GET", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
@router.api_route(
    "/webhooks/telegram/{bot_token}",
    methods=["POST", "GET", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def token_in_url_misdirected(bot_token: str, request: Request) -> Response:
    """Other methods, or the path without its trailing slash: answered here, because the generic
    405 and the trailing-slash redirect would repeat the path, and with it the token."""
    if request.method == "POST":
        detail = "POST to the same path with its trailing slash"
        return JSONResponse({"title": "Not found", "status": 404, "detail": detail}, status_code=404)
    detail = "only POST is allowed on this path"
    return JSONResponse(
        {"title": "Method not allowed", "status": 405, "detail": detail},
        status_code=405,
        headers={"Allow": "POST"},
    )


# --- seed 001: bots ---------------------------------------------------------------------------


@router.post(
    "/telegram/bots",
    name="seed.telegram_bots_create",
    response_model=SeedBotOut,
    status_code=201,
    summary="Seed 001: add a bot",
)
async def create_bot(
    body: BotConnect, principal: Manager, container: ContainerDep, request: Request
) -> SeedBotOut:
    return await connect_bot(body, principal, container, request)


@router.get("/telegram/bots", name="seed.telegram_bots_list", response_model=list[SeedBotOut])
async def list_bots(principal: Reader, container: ContainerDep) -> list[SeedBotOut]:
    bots: list[SeedBotOut] = []
    cursor: str | None = None
    while True:
        page = await container.integrations.list(
            principal.tenant_id,
            cursor=cursor,
            limit=200,
            kind=IntegrationKind.TELEGRAM_BOT.value,
            status=None,
        )
        bots.extend(SeedBotOut.of(i) for i in page.items)
        if page.next_cursor is None or len(bots) >= 1000:
            return bots
        cursor = page.next_cursor


@router.get("/telegram/bots/{bot_id}", name="seed.telegram_bots_get", response_model=SeedBotOut)
async def get_bot(bot_id: str, principal: Reader, container: ContainerDep) -> SeedBotOut:
    return SeedBotOut.of(await _bot(container, principal.tenant_id, bot_id))


@router.delete("/telegram/bots/{bot_id}", name="seed.telegram_bots_delete", status_code=204)
async def delete_bot(bot_id: str, principal: Manager, container: ContainerDep) -> Response:
    integration = await _bot(container, principal.tenant_id, bot_id)
    await container.telegram_bots.disconnect(integration)
    await container.integrations.delete(principal.tenant_id, integration.id)
    return Response(status_code=204)


@router.post(
    "/telegram/bots/{bot_id}/send",
    name="seed.telegram_bots_send",
    response_model=Accepted,
    status_code=202,
    summary="Seed 001: send through a bot (queued; poll GET /v1/messages/{id} for the status)",
)
async def send_through_bot(
    bot_id: str,
    body: BotSend,
    principal: Sender,
    container: ContainerDep,
    idempotency_key: Annotated[str | None, Header(max_length=191)] = None,
) -> Accepted:
    integration = await _bot(container, principal.tenant_id, bot_id)
    options: dict[str, Any] = {"parse_mode": body.parse_mode} if body.parse_mode else {}
    request = SendRequest(
        integration_id=integration.id,
        to=str(body.chat_id),
        text=body.text,
        attachments=[a.model_dump(mode="json", exclude_none=True) for a in body.attachments],
        buttons=[[b.model_dump(mode="json", exclude_none=True) for b in row] for row in body.buttons],
        reply_to_message_id=body.reply_to_message_id,
        options=options,
    )
    accepted = await container.sending.accept(principal.tenant_id, request, idempotency_key)
    return Accepted(message=message_out(accepted.message), replayed=accepted.replayed)


# --- seed 001: channels -----------------------------------------------------------------------


@router.post(
    "/telegram/channels",
    name="seed.telegram_channels_create",
    response_model=SeedChannelOut,
    status_code=201,
    summary="Seed 001: connect a channel or group (the bot must be allowed to post there)",
)
async def create_channel(
    body: ChannelCreate, principal: Manager, container: ContainerDep, request: Request
) -> SeedChannelOut:
    chat = body.channel_id if body.channel_id is not None else body.username
    if chat is None:
        raise InvalidInput("give 'channel_id' (numeric id or @username) or 'username'")
    bot_id = body.bot_id
    if bot_id is None:
        page = await container.integrations.list(
            principal.tenant_id, cursor=None, limit=2, kind=IntegrationKind.TELEGRAM_BOT.value, status=None
        )
        if len(page.items) != 1:
            raise InvalidInput("say which bot posts there: 'bot_id' (you have no bot, or several)")
        bot_id = page.items[0].id
    chat_ref = str(chat)
    if not chat_ref.lstrip("-").isdigit() and not chat_ref.startswith(("@", "https://")):
        chat_ref = "@" + chat_ref
    channel = await container.channels.connect(principal.tenant_id, bot_id, chat_ref)
    request.state.audit_target = ("channel", channel.id)
    return SeedChannelOut.of(channel)


@router.get("/telegram/channels", name="seed.telegram_channels_list", response_model=list[SeedChannelOut])
async def list_channels(principal: Reader, container: ContainerDep) -> list[SeedChannelOut]:
    page = await container.channels.list(
        principal.tenant_id, cursor=None, limit=200, integration_id=None, connected=True
    )
    return [SeedChannelOut.of(c) for c in page.items]


@router.get(
    "/telegram/channels/{channel_id}", name="seed.telegram_channels_get", response_model=SeedChannelOut
)
async def get_channel(channel_id: str, principal: Reader, container: ContainerDep) -> SeedChannelOut:
    return SeedChannelOut.of(await container.channels.get(principal.tenant_id, channel_id))


@router.delete("/telegram/channels/{channel_id}", name="seed.telegram_channels_delete", status_code=204)
async def delete_channel(channel_id: str, principal: Manager, container: ContainerDep) -> Response:
    await container.channels.remove(principal.tenant_id, channel_id)
    return Response(status_code=204)


@router.post(
    "/telegram/channels/{channel_id}/send",
    name="seed.telegram_channels_send",
    response_model=Accepted,
    status_code=202,
    summary="Seed 001: post to a channel or group",
)
async def send_to_channel(
    channel_id: str,
    body: ChannelPostBody,
    principal: Sender,
    container: ContainerDep,
    idempotency_key: Annotated[str | None, Header(max_length=191)] = None,
) -> Accepted:
    channel = await container.channels.get(principal.tenant_id, channel_id)
    return await post_to_channel(container, principal.tenant_id, channel, body, idempotency_key)
