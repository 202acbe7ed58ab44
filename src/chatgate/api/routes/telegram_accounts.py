"""Telegram user accounts: the login state machine over HTTP, dialogs, and seed 001's endpoints.

Every step also appears as an `account.login` event on the live stream (`/v1/stream`), so a UI
can follow a login (a new QR code before each expiry, the 2FA step) without polling.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any, Literal, Self

import qrcode
import qrcode.image.svg
from fastapi import APIRouter, Request, Response
from pydantic import Field, model_validator

from chatgate.api.deps import ContainerDep, Manager, Reader
from chatgate.api.routes.integrations import IntegrationOut
from chatgate.api.routes.seed_telegram import BotConnect, SeedBotOut, connect_bot
from chatgate.api.schemas import Out, StrictBody
from chatgate.bootstrap import Container
from chatgate.domain.errors import Conflict, NotFound
from chatgate.domain.integrations import IntegrationKind, IntegrationStatus
from chatgate.services.telegram_account_runtime import request_sync
from chatgate.store.models import Integration

router = APIRouter(tags=["telegram accounts"])


class AccountLogin(StrictBody):
    method: Literal["code", "qr"] = Field(
        "code", description="code: phone → code (→ 2FA); qr: scan a QR code"
    )
    phone: str | None = Field(None, min_length=5, max_length=32, description="For method=code")
    name: str | None = Field(None, min_length=1, max_length=200)
    api_id: int | None = Field(None, gt=0, description="Your own app's api_id (default: the operator's)")
    api_hash: str | None = Field(None, min_length=16, max_length=64)

    @model_validator(mode="after")
    def _phone_for_code(self) -> Self:
        if self.method == "code" and not self.phone:
            raise ValueError("a code login needs 'phone'")
        if (self.api_id is None) != (self.api_hash is None):
            raise ValueError("give both 'api_id' and 'api_hash', or neither")
        return self


class AccountOut(Out):
    id: str
    name: str
    phone: str | None
    username: str | None
    status: IntegrationStatus
    status_reason: str | None
    login: dict[str, Any] = Field(description="The login step: state, code_type, next_type, timeout, qr_url…")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Integration) -> AccountOut:
        return cls(
            id=row.id,
            name=row.name,
            phone=row.config.get("phone"),
            username=row.config.get("username"),
            status=IntegrationStatus(row.status),
            status_reason=row.status_reason,
            login=row.config.get("login") or {},
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class CodeBody(StrictBody):
    code: str = Field(min_length=3, max_length=16)


class PasswordBody(StrictBody):
    password: str = Field(min_length=1, max_length=256)


async def _account(container: Container, tenant_id: str, integration_id: str) -> Integration:
    integration = await container.integrations.get(tenant_id, integration_id)
    if integration.kind != IntegrationKind.TELEGRAM_USER:
        raise NotFound(f"account '{integration_id}' does not exist")
    return integration


async def _start(body: AccountLogin, tenant_id: str, container: Container) -> Integration:
    if body.method == "qr":
        return await container.telegram_accounts.start_qr_login(
            tenant_id, name=body.name, api_id=body.api_id, api_hash=body.api_hash
        )
    return await container.telegram_accounts.start_code_login(
        tenant_id, str(body.phone), name=body.name, api_id=body.api_id, api_hash=body.api_hash
    )


@router.post(
    "/v1/telegram/accounts",
    name="telegram_accounts.login",
    response_model=AccountOut,
    status_code=201,
    summary="Start logging in a Telegram account (code or QR)",
)
async def start_login(
    body: AccountLogin, principal: Manager, container: ContainerDep, request: Request
) -> AccountOut:
    integration = await _start(body, principal.tenant_id, container)
    request.state.audit_target = ("integration", integration.id)
    return AccountOut.of(integration)


@router.post(
    "/v1/telegram/accounts/{integration_id}/code", name="telegram_accounts.code", response_model=AccountOut
)
async def submit_code(
    integration_id: str, body: CodeBody, principal: Manager, container: ContainerDep
) -> AccountOut:
    await _account(container, principal.tenant_id, integration_id)
    return AccountOut.of(
        await container.telegram_accounts.submit_code(principal.tenant_id, integration_id, body.code)
    )


@router.post(
    "/v1/telegram/accounts/{integration_id}/password",
    name="telegram_accounts.password",
    response_model=AccountOut,
)
async def submit_password(
    integration_id: str, body: PasswordBody, principal: Manager, container: ContainerDep
) -> AccountOut:
    await _account(container, principal.tenant_id, integration_id)
    return AccountOut.of(
        await container.telegram_accounts.submit_password(principal.tenant_id, integration_id, body.password)
    )


@router.post(
    "/v1/telegram/accounts/{integration_id}/resend",
    name="telegram_accounts.resend",
    response_model=AccountOut,
)
async def resend_code(integration_id: str, principal: Manager, container: ContainerDep) -> AccountOut:
    await _account(container, principal.tenant_id, integration_id)
    return AccountOut.of(await container.telegram_accounts.resend_code(principal.tenant_id, integration_id))


class ReloginBody(StrictBody):
    method: Literal["code", "qr"] = Field(
        "code", description="code: to the account's phone number; qr: scan a new QR code"
    )


@router.post(
    "/v1/telegram/accounts/{integration_id}/relogin",
    name="telegram_accounts.relogin",
    response_model=AccountOut,
    summary="Log the same account integration in again (after Telegram revoked its session)",
)
async def relogin(
    integration_id: str, principal: Manager, container: ContainerDep, body: ReloginBody | None = None
) -> AccountOut:
    """A new session for an existing account integration: its conversations, webhook endpoints and
    project routing stay. Then the usual steps: `/code` (and `/password`), or scan the QR code."""
    await _account(container, principal.tenant_id, integration_id)
    method = body.method if body is not None else "code"
    return AccountOut.of(
        await container.telegram_accounts.relogin(principal.tenant_id, integration_id, method=method)
    )


async def _qr(
    container: Container, tenant_id: str, integration_id: str, fmt: Literal["png", "svg"]
) -> Response:
    integration = await _account(container, tenant_id, integration_id)
    login = integration.config.get("login") or {}
    url = login.get("qr_url")
    if login.get("state") != "qr_pending" or not url:
        raise Conflict(f"no QR code to show: the login is at '{login.get('state')}'")
    buffer = io.BytesIO()
    if fmt == "svg":
        qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage).save(buffer)
    else:
        qrcode.make(url).save(buffer)
    media_type = "image/svg+xml" if fmt == "svg" else "image/png"
    return Response(buffer.getvalue(), media_type=media_type, headers={"Cache-Control": "no-store"})


@router.get(
    "/v1/telegram/accounts/{integration_id}/qr.png",
    name="telegram_accounts.qr_png",
    summary="The current login QR code as PNG (it changes before each expiry)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def qr_png(integration_id: str, principal: Reader, container: ContainerDep) -> Response:
    return await _qr(container, principal.tenant_id, integration_id, "png")


@router.get(
    "/v1/telegram/accounts/{integration_id}/qr.svg",
    name="telegram_accounts.qr_svg",
    summary="The current login QR code as SVG",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
async def qr_svg(integration_id: str, principal: Reader, container: ContainerDep) -> Response:
    return await _qr(container, principal.tenant_id, integration_id, "svg")


@router.get("/v1/telegram/accounts/{integration_id}/dialogs", name="telegram_accounts.dialogs")
async def dialogs(integration_id: str, principal: Reader, container: ContainerDep) -> dict[str, Any]:
    """The account's recent dialogs, as last synced by the worker that runs the account."""
    integration = await _account(container, principal.tenant_id, integration_id)
    status = integration.provider_status or {}
    return {"data": status.get("dialogs", []), "synced_at": status.get("dialogs_synced_at")}


@router.post(
    "/v1/telegram/accounts/{integration_id}/dialogs/sync",
    name="telegram_accounts.sync_dialogs",
    status_code=202,
    summary="Re-read the account's dialogs and channels now (done by the worker that runs it)",
)
async def sync_dialogs(integration_id: str, principal: Manager, container: ContainerDep) -> dict[str, Any]:
    """The worker that runs the account re-reads them at its next heartbeat (a third of
    CHATGATE_TELEGRAM_ACCOUNT_LEASE_SECONDS); watch `synced_at` of GET …/dialogs change."""
    integration = await _account(container, principal.tenant_id, integration_id)
    if integration.status != IntegrationStatus.ACTIVE:
        raise Conflict(f"the account is {integration.status}: only a running account syncs its dialogs")
    await request_sync(container.db, integration, container.clock())
    status = integration.provider_status or {}
    return {"requested": True, "synced_at": status.get("dialogs_synced_at")}


# --- seed 001 ----------------------------------------------------------------------------------


class SeedConnect(StrictBody):
    """Seed 001's connect: an account by phone (code login) or QR; a bot token is accepted too."""

    phone: str | None = Field(None, min_length=5, max_length=32)
    method: Literal["code", "qr"] | None = None
    bot_token: str | None = Field(None, min_length=10, max_length=200)
    name: str | None = Field(None, min_length=1, max_length=200)
    api_id: int | None = Field(None, gt=0)
    api_hash: str | None = Field(None, min_length=16, max_length=64)


@router.post(
    "/api/integrations/telegram/connect",
    name="seed.telegram_connect_account",
    status_code=201,
    summary="Seed 001: connect a Telegram account (phone → code → 2FA, or QR); or a bot by token",
)
async def seed_connect(
    body: SeedConnect, principal: Manager, container: ContainerDep, request: Request
) -> AccountOut | SeedBotOut:
    if body.bot_token:
        return await connect_bot(
            BotConnect(bot_token=body.bot_token, name=body.name), principal, container, request
        )
    login = AccountLogin(
        method=body.method or ("code" if body.phone else "qr"),
        phone=body.phone,
        name=body.name,
        api_id=body.api_id,
        api_hash=body.api_hash,
    )
    integration = await _start(login, principal.tenant_id, container)
    request.state.audit_target = ("integration", integration.id)
    return AccountOut.of(integration)


@router.get(
    "/api/integrations/telegram/accounts", name="seed.telegram_accounts_list", response_model=list[AccountOut]
)
async def seed_list(principal: Reader, container: ContainerDep) -> list[AccountOut]:
    page = await container.integrations.list(
        principal.tenant_id, cursor=None, limit=200, kind=IntegrationKind.TELEGRAM_USER.value, status=None
    )
    return [AccountOut.of(i) for i in page.items]


@router.get(
    "/api/integrations/telegram/accounts/{integration_id}",
    name="seed.telegram_accounts_get",
    response_model=AccountOut,
)
async def seed_get(integration_id: str, principal: Reader, container: ContainerDep) -> AccountOut:
    return AccountOut.of(await _account(container, principal.tenant_id, integration_id))


@router.delete(
    "/api/integrations/telegram/accounts/{integration_id}",
    name="seed.telegram_accounts_delete",
    status_code=204,
)
async def seed_delete(integration_id: str, principal: Manager, container: ContainerDep) -> Response:
    integration = await _account(container, principal.tenant_id, integration_id)
    await container.telegram_accounts.log_out(integration)
    await container.integrations.delete(principal.tenant_id, integration_id)
    return Response(status_code=204)


@router.post(
    "/api/integrations/telegram/accounts/{integration_id}/reconnect",
    name="seed.telegram_accounts_reconnect",
    response_model=AccountOut,
    summary="Seed 001: check the session and run the account again (a revoked one needs a new login)",
)
async def seed_reconnect(integration_id: str, principal: Manager, container: ContainerDep) -> AccountOut:
    integration = await _account(container, principal.tenant_id, integration_id)
    return AccountOut.of(await container.telegram_accounts.reconnect(integration))


@router.get(
    "/v1/telegram/accounts/{integration_id}", name="telegram_accounts.get", response_model=IntegrationOut
)
async def get_account(integration_id: str, principal: Reader, container: ContainerDep) -> IntegrationOut:
    return IntegrationOut.of(await _account(container, principal.tenant_id, integration_id))
