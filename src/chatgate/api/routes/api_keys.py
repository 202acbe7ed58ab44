"""API keys for servers: shown once, stored hashed, scoped, revocable."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import Field

from chatgate.api.deps import ContainerDep, Manager
from chatgate.api.schemas import Out, PageLimit, PageOut, StrictBody
from chatgate.domain.access import Scope
from chatgate.store.models import ApiKey

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


class ApiKeyOut(Out):
    id: str
    name: str
    prefix: str = Field(description="The recognisable start of the key (`cgk_<lookup>_`)")
    scopes: list[Scope]
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The full key. Shown once: store it now, it cannot be read again")


class ApiKeyCreate(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1, description="Any of read, send, manage")
    expires_in_days: int | None = Field(None, ge=1, le=3650)


@router.get("", name="api_keys.list", response_model=PageOut[ApiKeyOut])
async def list_keys(
    principal: Manager,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
    include_revoked: bool = False,
) -> PageOut[ApiKeyOut]:
    page = await container.access.list_api_keys(
        principal.tenant_id, cursor=cursor, limit=limit, include_revoked=include_revoked
    )
    return PageOut(
        data=[ApiKeyOut.model_validate(_view(k)) for k in page.items], next_cursor=page.next_cursor
    )


@router.post("", name="api_keys.create", response_model=ApiKeyCreated, status_code=201)
async def create_key(
    body: ApiKeyCreate, principal: Manager, container: ContainerDep, request: Request
) -> ApiKeyCreated:
    created = await container.access.create_api_key(
        principal, name=body.name, scopes=body.scopes, expires_in_days=body.expires_in_days
    )
    request.state.audit_target = ("api_key", created.key.id)
    return ApiKeyCreated.model_validate({**_view(created.key), "key": created.plaintext})


@router.get("/{api_key_id}", name="api_keys.get", response_model=ApiKeyOut)
async def get_key(api_key_id: str, principal: Manager, container: ContainerDep) -> ApiKeyOut:
    return ApiKeyOut.model_validate(
        _view(await container.access.get_api_key(principal.tenant_id, api_key_id))
    )


@router.delete("/{api_key_id}", name="api_keys.revoke", response_model=ApiKeyOut)
async def revoke_key(api_key_id: str, principal: Manager, container: ContainerDep) -> ApiKeyOut:
    """Revoke the key: it stops working at once, on every server."""
    return ApiKeyOut.model_validate(
        _view(await container.access.revoke_api_key(principal.tenant_id, api_key_id))
    )


def _view(key: ApiKey) -> dict[str, object]:
    fields = ("id", "name", "scopes", "created_by", "created_at", "expires_at", "last_used_at", "revoked_at")
    view = {f: getattr(key, f) for f in fields}
    view["prefix"] = f"cgk_{key.lookup}_"
    return view
