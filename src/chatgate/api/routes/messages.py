"""Sending messages and reading their status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel, Field, HttpUrl, model_validator

from chatgate.api.deps import ContainerDep, Reader, Sender
from chatgate.api.schemas import Out, StrictBody
from chatgate.services.sending import SendRequest
from chatgate.store.models import Message

router = APIRouter(prefix="/v1/messages", tags=["messages"])


class AttachmentIn(StrictBody):
    kind: Literal["image", "video", "audio", "voice", "document", "sticker"] = "document"
    url: HttpUrl | None = Field(None, description="Where the provider fetches the file")
    media_id: str | None = Field(None, description="An upload from POST /v1/media")
    mime_type: str | None = Field(None, max_length=200)
    file_name: str | None = Field(None, max_length=300)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.url is None) == (self.media_id is None):
            raise ValueError("give exactly one of 'url' or 'media_id'")
        return self


class Button(StrictBody):
    text: str = Field(min_length=1, max_length=200)
    callback_data: str | None = Field(None, max_length=64)
    url: HttpUrl | None = None


class SendBody(StrictBody):
    conversation_id: str | None = Field(None, description="Send into this conversation")
    integration_id: str | None = Field(None, description="With `to`: send through this integration")
    to: str | None = Field(None, max_length=191, description="With `integration_id`: the recipient's address")
    text: str | None = Field(None, max_length=65_536)
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=10)
    reply_to_message_id: str | None = None
    buttons: list[list[Button]] = Field(default_factory=list, max_length=20, description="Rows of buttons")
    parse_mode: Literal["HTML", "Markdown", "MarkdownV2"] | None = Field(
        None, description="Telegram: how `text` is formatted"
    )
    template: dict[str, Any] | None = Field(
        None,
        description="WhatsApp: {name, language, components}; Twilio: {content_sid, variables}. "
        "Needed outside the 24-hour customer-service window",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Other provider-specific options (e.g. a WhatsApp list menu)"
    )


class MessageOut(Out):
    id: str
    integration_id: str
    conversation_id: str
    contact_id: str | None
    direction: str
    status: str
    text: str | None
    attachments: list[dict[str, Any]]
    buttons: list[Any]
    reply_to_message_id: str | None
    provider_message_id: str | None
    error_code: str | None
    error_message: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None
    edited_at: datetime | None
    deleted_at: datetime | None


class Accepted(BaseModel):
    message: MessageOut
    replayed: bool = Field(description="True when this Idempotency-Key was seen before: nothing new was sent")


def message_out(message: Message) -> MessageOut:
    return MessageOut.model_validate(message)


@router.post(
    "",
    name="messages.send",
    status_code=202,
    response_model=Accepted,
    summary="Queue a message for sending",
    responses={
        409: {"description": "Idempotency-Key reused with another request, or integration unavailable"}
    },
)
async def send_message(
    body: SendBody,
    principal: Sender,
    container: ContainerDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=191, description="Retries with the same key within 24 h return the same message"),
    ] = None,
) -> Accepted:
    request = SendRequest(
        conversation_id=body.conversation_id,
        integration_id=body.integration_id,
        to=body.to,
        text=body.text,
        attachments=[a.model_dump(mode="json", exclude_none=True) for a in body.attachments],
        reply_to_message_id=body.reply_to_message_id,
        buttons=[[b.model_dump(mode="json", exclude_none=True) for b in row] for row in body.buttons],
        options=send_options(body),
    )
    accepted = await container.sending.accept(principal.tenant_id, request, idempotency_key)
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return Accepted(message=message_out(accepted.message), replayed=accepted.replayed)


@router.get("/{message_id}", name="messages.get", response_model=MessageOut)
async def get_message(message_id: str, principal: Reader, container: ContainerDep) -> MessageOut:
    return message_out(await container.sending.get(principal.tenant_id, message_id))


class EditBody(StrictBody):
    text: str | None = Field(None, min_length=1, max_length=4096, description="The new text")
    buttons: list[list[Button]] | None = Field(None, max_length=20, description="New rows of buttons")

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.text is None and self.buttons is None:
            raise ValueError("give 'text', 'buttons' or both")
        return self


@router.patch(
    "/{message_id}",
    name="messages.edit",
    response_model=MessageOut,
    summary="Edit a sent message at the provider (Telegram)",
)
async def edit_message(
    message_id: str, body: EditBody, principal: Sender, container: ContainerDep
) -> MessageOut:
    buttons = (
        [[b.model_dump(mode="json", exclude_none=True) for b in row] for row in body.buttons]
        if body.buttons is not None
        else None
    )
    message = await container.actions.edit_message(
        principal.tenant_id, message_id, text=body.text, buttons=buttons
    )
    return message_out(message)


@router.delete(
    "/{message_id}",
    name="messages.delete",
    response_model=MessageOut,
    summary="Delete a sent message at the provider (Telegram)",
)
async def delete_message(message_id: str, principal: Sender, container: ContainerDep) -> MessageOut:
    return message_out(await container.actions.delete_message(principal.tenant_id, message_id))


@router.post(
    "/{message_id}/read",
    name="messages.mark_read",
    response_model=MessageOut,
    summary="Mark a received message as read at the provider (WhatsApp)",
)
async def mark_read(message_id: str, principal: Sender, container: ContainerDep) -> MessageOut:
    return message_out(await container.actions.mark_read(principal.tenant_id, message_id))


def send_options(body: SendBody) -> dict[str, Any]:
    options = dict(body.options)
    if body.parse_mode:
        options["parse_mode"] = body.parse_mode
    if body.template:
        options["template"] = body.template
    return options
