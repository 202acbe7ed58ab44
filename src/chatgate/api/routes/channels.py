"""Channels and groups a Telegram bot manages: connect (rights checked), list, post, remove."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request, Response
from pydantic import Field

from chatgate.api.deps import ContainerDep, Manager, Reader, Sender
from chatgate.api.routes.messages import Accepted, AttachmentIn, Button, message_out
from chatgate.api.schemas import Out, PageLimit, PageOut, StrictBody
from chatgate.domain.errors import InvalidInput
from chatgate.domain.messages import ConversationKind
from chatgate.services.sending import SendRequest
from chatgate.store.models import Channel

router = APIRouter(prefix="/v1/channels", tags=["channels"])


class ChannelOut(Out):
    id: str
    integration_id: str
    external_id: str = Field(description="Telegram's chat id")
    kind: str = Field(description="channel or group")
    title: str | None
    username: str | None
    member_status: str = Field(description="The bot's membership: creator, administrator, member, left…")
    can_post: bool
    rights: dict[str, bool]
    connected: bool = Field(description="Connected by you (false: known only from Telegram's updates)")
    created_at: datetime
    updated_at: datetime


class ChannelConnect(StrictBody):
    integration_id: str = Field(description="The Telegram bot integration that posts there")
    chat: str = Field(min_length=2, max_length=200, description="@username, a t.me link, or the numeric id")


class ChannelPostBody(StrictBody):
    text: str | None = Field(None, max_length=65_536)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=10)
    buttons: list[list[Button]] = Field(default_factory=list, max_length=20, description="Rows of buttons")
    parse_mode: Literal["HTML", "Markdown", "MarkdownV2"] | None = None


@router.get("", name="channels.list", response_model=PageOut[ChannelOut])
async def list_channels(
    principal: Reader,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
    integration_id: str | None = None,
    connected: bool | None = None,
) -> PageOut[ChannelOut]:
    page = await container.channels.list(
        principal.tenant_id, cursor=cursor, limit=limit, integration_id=integration_id, connected=connected
    )
    return PageOut(data=[ChannelOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor)


@router.post(
    "",
    name="channels.connect",
    response_model=ChannelOut,
    status_code=201,
    summary="Connect a channel or group after checking the bot may post there",
)
async def connect_channel(
    body: ChannelConnect, principal: Manager, container: ContainerDep, request: Request
) -> ChannelOut:
    channel = await container.channels.connect(principal.tenant_id, body.integration_id, body.chat)
    request.state.audit_target = ("channel", channel.id)
    return ChannelOut.model_validate(channel)


@router.get("/{channel_id}", name="channels.get", response_model=ChannelOut)
async def get_channel(channel_id: str, principal: Reader, container: ContainerDep) -> ChannelOut:
    return ChannelOut.model_validate(await container.channels.get(principal.tenant_id, channel_id))


@router.delete("/{channel_id}", name="channels.delete", status_code=204)
async def remove_channel(channel_id: str, principal: Manager, container: ContainerDep) -> Response:
    await container.channels.remove(principal.tenant_id, channel_id)
    return Response(status_code=204)


async def post_to_channel(
    container: ContainerDep,
    tenant_id: str,
    channel: Channel,
    body: ChannelPostBody,
    idempotency_key: str | None,
) -> Accepted:
    if not channel.can_post:
        raise InvalidInput(
            f"the bot cannot post to {channel.title or channel.external_id} ({channel.member_status})"
        )
    request = SendRequest(
        integration_id=channel.integration_id,
        to=channel.external_id,
        to_kind=ConversationKind.CHANNEL if channel.kind == "channel" else ConversationKind.GROUP,
        text=body.text,
        attachments=[a.model_dump(mode="json", exclude_none=True) for a in body.attachments],
        buttons=[[b.model_dump(mode="json", exclude_none=True) for b in row] for row in body.buttons],
        options={"parse_mode": body.parse_mode} if body.parse_mode else {},
    )
    accepted = await container.sending.accept(tenant_id, request, idempotency_key)
    return Accepted(message=message_out(accepted.message), replayed=accepted.replayed)


@router.post(
    "/{channel_id}/messages",
    name="channels.post",
    response_model=Accepted,
    status_code=202,
    summary="Post to the channel or group (queued like any send)",
)
async def post_message(
    channel_id: str,
    body: ChannelPostBody,
    principal: Sender,
    container: ContainerDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=191)] = None,
) -> Accepted:
    channel = await container.channels.get(principal.tenant_id, channel_id)
    accepted = await post_to_channel(container, principal.tenant_id, channel, body, idempotency_key)
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return accepted
