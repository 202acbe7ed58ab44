"""Seed 002's contract, exactly as its CRM's edge functions call it (`X-API-Key` = one of our
tenant API keys), plus the native route that chooses how a project's Telegram sends go out.

- `POST /integration/lovable/connect` `{project_id, webhook_url, phone}`: inbound messages of the
  account with that phone are POSTed to `webhook_url` as `{project_id, account_phone, from_id,
  from_username, text}` (with `X-Lovable-Secret` when a secret is set) through the durable
  webhook delivery.
- `POST /telegram/send` `{project_id, phone, to, text}`: send from that account (or through the
  integration the project routes Telegram sends to).
- `GET /telegram/status`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from chatgate.api.deps import ContainerDep, Manager, Reader, Sender
from chatgate.api.schemas import Out, StrictBody
from chatgate.bootstrap import Container
from chatgate.domain.errors import InvalidInput, NotFound
from chatgate.domain.integrations import IntegrationKind
from chatgate.services.projects import phone_digits
from chatgate.services.sending import SendRequest
from chatgate.services.webhooks import EndpointSpec
from chatgate.store.models import Integration, WebhookEndpoint

router = APIRouter(tags=["seed: telegram crm"])


class LovableConnect(StrictBody):
    project_id: str | int = Field(description="The CRM's organization id; bound to your account on first use")
    webhook_url: str = Field(min_length=8, max_length=2000)
    phone: str = Field(min_length=7, max_length=32, description="The Telegram account's phone number")
    webhook_secret: str | None = Field(
        None, min_length=8, max_length=200, description="Sent back as X-Lovable-Secret (optional)"
    )


class TelegramSend(StrictBody):
    project_id: str | int
    phone: str = Field(min_length=7, max_length=32, description="The sending account's phone number")
    to: str | int = Field(description="Recipient: phone number, @username or Telegram id")
    text: str = Field(min_length=1, max_length=4096)


class ProjectOut(Out):
    project_id: str
    telegram_send_integration_id: str | None
    created_at: datetime
    updated_at: datetime


class ProjectRouting(StrictBody):
    telegram_send_integration_id: str | None = Field(
        description="A telegram_user, telegram_bot or webhook (external provider) integration; "
        "null: send as the account named in each request"
    )


async def _lovable_endpoint(
    container: Container, tenant_id: str, project_id: str, phone: str
) -> WebhookEndpoint | None:
    cursor: str | None = None
    while True:
        page = await container.webhooks.endpoints(tenant_id, cursor=cursor, limit=200)
        for endpoint in page.items:
            options = endpoint.format_options or {}
            if (
                endpoint.format == "lovable"
                and options.get("project_id") == project_id
                and options.get("account_phone") == phone
            ):
                return endpoint
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor


@router.post(
    "/integration/lovable/connect", name="seed.lovable_connect", summary="Seed 002: register the CRM webhook"
)
async def lovable_connect(
    body: LovableConnect, principal: Manager, container: ContainerDep, request: Request
) -> dict[str, Any]:
    project = await container.projects.bind(principal.tenant_id, str(body.project_id))
    phone = phone_digits(body.phone)
    account = await container.projects.account_by_phone(principal.tenant_id, body.phone)
    if account is None:
        raise InvalidInput(
            f"no Telegram account with phone +{phone} is connected here; connect it first "
            "(POST /api/integrations/telegram/connect)"
        )
    spec = EndpointSpec(
        url=body.webhook_url,
        description=f"Telegram CRM (project {project.project_id}, +{phone})",
        event_types=["message.received"],
        integration_ids=[account.id],
        format="lovable",
        format_options={"project_id": project.project_id, "account_phone": phone},
        format_secret=body.webhook_secret,
    )
    existing = await _lovable_endpoint(container, principal.tenant_id, project.project_id, phone)
    if existing is None:
        endpoint, _ = await container.webhooks.create(principal.tenant_id, spec)
    else:
        endpoint = await container.webhooks.update(principal.tenant_id, existing.id, spec)
    request.state.audit_target = ("webhook_endpoint", endpoint.id)
    return {
        "status": "connected",
        "project_id": project.project_id,
        "phone": phone,
        "webhook_url": endpoint.url,
        "account_status": account.status,
        "integration_id": account.id,
    }


async def _sender(container: Container, tenant_id: str, project_id: str, phone: str) -> Integration:
    project = await container.projects.get(tenant_id, project_id)
    if project.telegram_send_integration_id:
        return await container.integrations.get(tenant_id, project.telegram_send_integration_id)
    account = await container.projects.account_by_phone(tenant_id, phone)
    if account is None:
        raise NotFound(f"no Telegram account with phone +{phone_digits(phone)} is connected here")
    return account


def account_recipient(to: str | int) -> str:
    """Seed 002's `to` (its "recipientPhone") for a send as a Telegram account. The CRM keeps
    numbers as digits (its `account_phone` is "79955073535"), and a digits-only recipient would
    otherwise be taken for a Telegram id: a JSON number stays an id, a digits-only string of 11 to
    15 digits (an international number with its country code) is a phone, anything shorter an
    id (Telegram user ids have at most 10 digits today), anything else as given."""
    if isinstance(to, int):
        return str(to)
    value = to.strip()
    if value.isdigit() and 11 <= len(value) <= 15:
        return "+" + value
    return value


@router.post("/telegram/send", name="seed.lovable_send", summary="Seed 002: send as the Telegram account")
async def telegram_send(body: TelegramSend, principal: Sender, container: ContainerDep) -> dict[str, Any]:
    integration = await _sender(container, principal.tenant_id, str(body.project_id), body.phone)
    to = (
        account_recipient(body.to)
        if integration.kind == IntegrationKind.TELEGRAM_USER
        else str(body.to).strip()
    )
    request = SendRequest(integration_id=integration.id, to=to, text=body.text)
    accepted = await container.sending.accept(principal.tenant_id, request, None)
    return {
        "ok": True,
        "message_id": accepted.message.id,
        "status": accepted.message.status,
        "via": integration.kind,
    }


@router.get("/telegram/status", name="seed.lovable_status", summary="Seed 002: the accounts and their state")
async def telegram_status(principal: Reader, container: ContainerDep) -> dict[str, Any]:
    page = await container.integrations.list(
        principal.tenant_id, cursor=None, limit=200, kind=IntegrationKind.TELEGRAM_USER.value, status=None
    )
    accounts = [
        {
            "integration_id": i.id,
            "phone": i.config.get("phone"),
            "status": i.status,
            "connected": i.status == "active",
            "username": i.config.get("username"),
        }
        for i in page.items
    ]
    return {"status": "ok", "accounts": accounts}


@router.get("/v1/projects/{project_id}", name="projects.get", response_model=ProjectOut)
async def get_project(project_id: str, principal: Reader, container: ContainerDep) -> ProjectOut:
    return ProjectOut.model_validate(await container.projects.get(principal.tenant_id, project_id))


@router.put(
    "/v1/projects/{project_id}",
    name="projects.route",
    response_model=ProjectOut,
    summary="Choose which integration a project's Telegram sends go through",
)
async def route_project(
    project_id: str, body: ProjectRouting, principal: Manager, container: ContainerDep
) -> ProjectOut:
    project = await container.projects.route_sends(
        principal.tenant_id, project_id, body.telegram_send_integration_id
    )
    return ProjectOut.model_validate(project)
