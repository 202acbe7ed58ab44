"""The integrations registry. Credentials go in, and only masked hints ever come out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, field_validator

from chatgate.api.deps import ContainerDep, Manager, Reader, Sender
from chatgate.api.schemas import Out, PageLimit, PageOut, StrictBody
from chatgate.domain.errors import InvalidInput
from chatgate.domain.integrations import IntegrationKind, IntegrationStatus
from chatgate.services.integrations import IntegrationChanges
from chatgate.store.models import Integration

router = APIRouter(prefix="/v1/integrations", tags=["integrations"])

_MAX_CREDENTIALS = 20
_MAX_CREDENTIAL_BYTES = 16_384


def _check_credentials(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > _MAX_CREDENTIALS:
        raise ValueError(f"at most {_MAX_CREDENTIALS} credential fields")
    for key, secret in value.items():
        if not key or len(key) > 64:
            raise ValueError("credential names must have 1 to 64 characters")
        if len(secret.encode()) > _MAX_CREDENTIAL_BYTES:
            raise ValueError(f"credential '{key}' is longer than {_MAX_CREDENTIAL_BYTES} bytes")
    return value


class Counters(BaseModel):
    messages_received: int
    messages_sent: int
    last_activity_at: datetime | None


class IntegrationOut(Out):
    id: str
    kind: IntegrationKind
    name: str
    public_id: str = Field(description="Used in the inbound URL /in/{kind}/{public_id}; never a credential")
    inbound_path: str
    status: IntegrationStatus
    status_reason: str | None
    config: dict[str, Any]
    credentials: dict[str, str] = Field(description="Masked hints only; secrets are never returned")
    counters: Counters
    last_error: str | None
    last_error_at: datetime | None
    provider_status: dict[str, Any] = Field(
        description="What the provider last reported (Telegram: mode, webhook_url, pending_update_count, "
        "last_error_message, checked_at)"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Integration) -> IntegrationOut:
        return cls(
            id=row.id,
            kind=IntegrationKind(row.kind),
            name=row.name,
            public_id=row.public_id,
            inbound_path=inbound_path(row),
            status=IntegrationStatus(row.status),
            status_reason=row.status_reason,
            config=row.config,
            credentials=row.credentials_masked,
            counters=Counters(
                messages_received=row.messages_received,
                messages_sent=row.messages_sent,
                last_activity_at=row.last_activity_at,
            ),
            last_error=row.last_error,
            last_error_at=row.last_error_at,
            provider_status=row.provider_status or {},
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def inbound_path(row: Integration) -> str:
    # The short names of KIND_ALIASES, the URLs pasted into providers' dashboards.
    short = {"telegram_bot": "telegram", "whatsapp_cloud": "whatsapp"}.get(row.kind, row.kind)
    return f"/in/{short}/{row.public_id}"


class IntegrationCreate(StrictBody):
    kind: IntegrationKind
    name: str = Field(min_length=1, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict, description="Non-secret settings")
    credentials: dict[str, str] = Field(default_factory=dict, description="Secrets; stored encrypted")

    _check = field_validator("credentials")(_check_credentials)


class IntegrationPatch(StrictBody):
    name: str | None = Field(None, min_length=1, max_length=200)
    config: dict[str, Any] | None = None
    credentials: dict[str, str] | None = Field(None, description="Replaces all stored credentials")
    enabled: bool | None = Field(None, description="false disables the integration; true re-enables it")

    _check = field_validator("credentials")(_check_credentials)


@router.get("", name="integrations.list", response_model=PageOut[IntegrationOut])
async def list_integrations(
    principal: Reader,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
    kind: IntegrationKind | None = None,
    status: IntegrationStatus | None = None,
) -> PageOut[IntegrationOut]:
    page = await container.integrations.list(
        principal.tenant_id,
        cursor=cursor,
        limit=limit,
        kind=kind.value if kind else None,
        status=status.value if status else None,
    )
    return PageOut(data=[IntegrationOut.of(i) for i in page.items], next_cursor=page.next_cursor)


@router.post("", name="integrations.create", response_model=IntegrationOut, status_code=201)
async def create_integration(
    body: IntegrationCreate, principal: Manager, container: ContainerDep, request: Request
) -> IntegrationOut:
    if body.kind == IntegrationKind.TELEGRAM_BOT:
        # A bot is validated with getMe and its webhook registered; the token is all it needs.
        token = body.credentials.get("bot_token")
        if not token:
            raise InvalidInput("a Telegram bot needs credentials.bot_token")
        integration = await container.telegram_bots.connect(
            principal.tenant_id, token, name=body.name, mode=str(body.config.get("mode") or "auto")
        )
    elif body.kind == IntegrationKind.WHATSAPP_CLOUD:
        integration = await container.whatsapp.connect_cloud(
            principal.tenant_id, body.name, body.config, body.credentials
        )
    elif body.kind == IntegrationKind.TWILIO:
        integration = await container.whatsapp.connect_twilio(
            principal.tenant_id, body.name, body.config, body.credentials
        )
    else:
        integration = await container.integrations.create(
            principal.tenant_id,
            kind=body.kind,
            name=body.name,
            config=body.config,
            credentials=body.credentials,
        )
    request.state.audit_target = ("integration", integration.id)
    return IntegrationOut.of(integration)


@router.get("/{integration_id}", name="integrations.get", response_model=IntegrationOut)
async def get_integration(integration_id: str, principal: Reader, container: ContainerDep) -> IntegrationOut:
    return IntegrationOut.of(await container.integrations.get(principal.tenant_id, integration_id))


@router.patch("/{integration_id}", name="integrations.update", response_model=IntegrationOut)
async def update_integration(
    integration_id: str, body: IntegrationPatch, principal: Manager, container: ContainerDep
) -> IntegrationOut:
    current = await container.integrations.get(principal.tenant_id, integration_id)
    config = body.config
    if current.kind == IntegrationKind.TELEGRAM_BOT and config is not None:
        # The bot's identity stays; only settings such as `mode` change.
        config = {**current.config, **config, "bot_id": current.config.get("bot_id")}
        container.telegram_bots.check_mode(str(config.get("mode") or "auto"))
    changes = IntegrationChanges(
        name=body.name, config=config, credentials=body.credentials, enabled=body.enabled
    )
    updated = await container.integrations.update(principal.tenant_id, integration_id, changes)
    if (
        updated.kind == IntegrationKind.TELEGRAM_BOT
        and config is not None
        and config.get("mode") != current.config.get("mode")
        and updated.status not in (IntegrationStatus.DISABLED, IntegrationStatus.NEEDS_REAUTH)
    ):
        updated = await container.telegram_bots.reconnect(updated)  # setWebhook or deleteWebhook now
    if (
        updated.kind == IntegrationKind.TELEGRAM_BOT
        and body.enabled is True
        and updated.status == IntegrationStatus.PENDING
    ):
        # Re-enabled: register the webhook again or resume polling, instead of staying pending.
        updated = await container.telegram_bots.apply_mode(updated)
    return IntegrationOut.of(updated)


@router.delete("/{integration_id}", name="integrations.delete", status_code=204)
async def delete_integration(integration_id: str, principal: Manager, container: ContainerDep) -> Response:
    integration = await container.integrations.get(principal.tenant_id, integration_id)
    if integration.kind == IntegrationKind.TELEGRAM_BOT:
        await container.telegram_bots.disconnect(integration)
    elif integration.kind == IntegrationKind.TELEGRAM_USER:
        await container.telegram_accounts.log_out(integration)
    await container.integrations.delete(principal.tenant_id, integration_id)
    return Response(status_code=204)


@router.post(
    "/{integration_id}/check",
    name="integrations.check",
    response_model=IntegrationOut,
    summary="Check the integration at the provider now and repair what is ours to repair",
)
async def check_integration(
    integration_id: str, principal: Manager, container: ContainerDep
) -> IntegrationOut:
    integration = await container.integrations.get(principal.tenant_id, integration_id)
    if integration.kind != IntegrationKind.TELEGRAM_BOT:
        raise InvalidInput(f"{integration.kind} integrations have no provider health check yet")
    return IntegrationOut.of(await container.telegram_bots.check(integration))


class ReconnectBody(StrictBody):
    bot_token: str | None = Field(None, max_length=200, description="Telegram: a new token for the same bot")
    credentials: dict[str, str] | None = Field(
        None,
        description="WhatsApp Cloud (access_token, app_secret) or Twilio (auth_token, api_key_sid, "
        "api_key_secret…): new values, merged over the stored credentials and checked at the provider",
    )

    _check = field_validator("credentials")(_check_credentials)


@router.post(
    "/{integration_id}/reconnect",
    name="integrations.reconnect",
    response_model=IntegrationOut,
    summary="Reconnect: re-register the webhook (or polling), optionally with new credentials",
)
async def reconnect_integration(
    integration_id: str, body: ReconnectBody, principal: Manager, container: ContainerDep
) -> IntegrationOut:
    integration = await container.integrations.get(principal.tenant_id, integration_id)
    if integration.kind in (IntegrationKind.WHATSAPP_CLOUD, IntegrationKind.TWILIO):
        return IntegrationOut.of(await container.whatsapp.reconnect(integration, body.credentials))
    if integration.kind != IntegrationKind.TELEGRAM_BOT:
        raise InvalidInput(f"{integration.kind} integrations cannot be reconnected this way yet")
    return IntegrationOut.of(await container.telegram_bots.reconnect(integration, body.bot_token))


class ButtonAnswer(StrictBody):
    callback_id: str = Field(min_length=1, max_length=200, description="From the button.pressed event")
    text: str | None = Field(None, max_length=200, description="A notification shown to the user")
    show_alert: bool = False


@router.post(
    "/{integration_id}/button-answers",
    name="integrations.answer_button",
    status_code=204,
    summary="Answer a button press (Telegram answerCallbackQuery)",
)
async def answer_button(
    integration_id: str, body: ButtonAnswer, principal: Sender, container: ContainerDep
) -> Response:
    await container.actions.answer_button(
        principal.tenant_id, integration_id, body.callback_id, body.text, body.show_alert
    )
    return Response(status_code=204)
