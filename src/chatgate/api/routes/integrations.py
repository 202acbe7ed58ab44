"""The integrations registry. Credentials go in, and only masked hints ever come out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, field_validator

from chatgate.api.deps import ContainerDep, Manager, Reader
from chatgate.api.schemas import Out, PageLimit, PageOut, StrictBody
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
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Integration) -> IntegrationOut:
        return cls(
            id=row.id,
            kind=IntegrationKind(row.kind),
            name=row.name,
            public_id=row.public_id,
            inbound_path=f"/in/{row.kind}/{row.public_id}",
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
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


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
    integration = await container.integrations.create(
        principal.tenant_id, kind=body.kind, name=body.name, config=body.config, credentials=body.credentials
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
    changes = IntegrationChanges(
        name=body.name, config=body.config, credentials=body.credentials, enabled=body.enabled
    )
    return IntegrationOut.of(
        await container.integrations.update(principal.tenant_id, integration_id, changes)
    )


@router.delete("/{integration_id}", name="integrations.delete", status_code=204)
async def delete_integration(integration_id: str, principal: Manager, container: ContainerDep) -> Response:
    await container.integrations.delete(principal.tenant_id, integration_id)
    return Response(status_code=204)
