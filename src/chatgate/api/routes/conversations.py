"""Conversations, their messages, and contacts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import Field

from chatgate.api.deps import ContainerDep, Reader, Sender
from chatgate.api.routes.messages import MessageOut, message_out
from chatgate.api.schemas import Out, PageLimit, PageOut, StrictBody

router = APIRouter(prefix="/v1", tags=["conversations"])


class ConversationOut(Out):
    id: str
    integration_id: str
    external_id: str
    kind: str
    title: str | None
    contact_id: str | None
    last_message_at: datetime | None
    created_at: datetime


class ContactOut(Out):
    id: str
    integration_id: str
    address: str
    display_name: str | None
    username: str | None
    phone: str | None
    unreachable: bool
    created_at: datetime
    updated_at: datetime


@router.get("/conversations", name="conversations.list", response_model=PageOut[ConversationOut])
async def list_conversations(
    principal: Reader,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
    integration_id: str | None = None,
    q: str | None = None,
) -> PageOut[ConversationOut]:
    page = await container.conversations.conversations(
        principal.tenant_id, cursor=cursor, limit=limit, integration_id=integration_id, q=q
    )
    return PageOut(data=[ConversationOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("/conversations/{conversation_id}", name="conversations.get", response_model=ConversationOut)
async def get_conversation(
    conversation_id: str, principal: Reader, container: ContainerDep
) -> ConversationOut:
    return ConversationOut.model_validate(
        await container.conversations.conversation(principal.tenant_id, conversation_id)
    )


@router.get(
    "/conversations/{conversation_id}/messages",
    name="conversations.messages",
    response_model=PageOut[MessageOut],
    summary="Messages of a conversation, newest first; `q` searches their text",
)
async def list_messages(
    conversation_id: str,
    principal: Reader,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
    q: str | None = None,
    direction: str | None = None,
    status: str | None = None,
) -> PageOut[MessageOut]:
    page = await container.conversations.messages(
        principal.tenant_id,
        conversation_id,
        cursor=cursor,
        limit=limit,
        q=q,
        direction=direction,
        status=status,
    )
    return PageOut(data=[message_out(m) for m in page.items], next_cursor=page.next_cursor)


@router.get("/contacts", name="contacts.list", response_model=PageOut[ContactOut])
async def list_contacts(
    principal: Reader,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
    integration_id: str | None = None,
    q: str | None = None,
) -> PageOut[ContactOut]:
    page = await container.conversations.contacts(
        principal.tenant_id, cursor=cursor, limit=limit, integration_id=integration_id, q=q
    )
    return PageOut(data=[ContactOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("/contacts/{contact_id}", name="contacts.get", response_model=ContactOut)
async def get_contact(contact_id: str, principal: Reader, container: ContainerDep) -> ContactOut:
    return ContactOut.model_validate(await container.conversations.contact(principal.tenant_id, contact_id))


class ChatActionBody(StrictBody):
    action: Literal[
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
    ] = Field("typing", description="What the other side sees (Telegram chat actions)")


@router.post(
    "/conversations/{conversation_id}/actions",
    name="conversations.action",
    status_code=204,
    summary="Show a chat action such as 'typing…' (Telegram)",
)
async def chat_action(
    conversation_id: str, body: ChatActionBody, principal: Sender, container: ContainerDep
) -> Response:
    await container.actions.chat_action(principal.tenant_id, conversation_id, body.action)
    return Response(status_code=204)
