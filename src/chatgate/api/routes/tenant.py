"""The caller's own tenant."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import Field

from chatgate.api.deps import ContainerDep, Reader, UserAdmin
from chatgate.api.schemas import Out, StrictBody

router = APIRouter(prefix="/v1", tags=["tenant"])


class TenantOut(Out):
    id: str
    name: str
    slug: str
    external_id: str | None = Field(description="The tenant's id in the external user service, if linked")
    created_at: datetime


class TenantPatch(StrictBody):
    name: str | None = Field(None, min_length=1, max_length=200)
    external_id: str | None = Field(
        None, max_length=191, description="Link to the user service's tenant claim; empty string unlinks"
    )


@router.get("/tenant", name="tenant.get", response_model=TenantOut)
async def get_tenant(principal: Reader, container: ContainerDep) -> TenantOut:
    return TenantOut.model_validate(await container.access.tenant(principal.tenant_id))


@router.patch("/tenant", name="tenant.update", response_model=TenantOut)
async def update_tenant(body: TenantPatch, principal: UserAdmin, container: ContainerDep) -> TenantOut:
    tenant = await container.access.update_tenant(
        principal.tenant_id, name=body.name, external_id=body.external_id
    )
    return TenantOut.model_validate(tenant)
