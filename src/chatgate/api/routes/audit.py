"""The audit log, for a tenant's owners and admins (and manage-scoped keys)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from chatgate.api.deps import Auditor, ContainerDep
from chatgate.api.schemas import Out, PageLimit, PageOut

router = APIRouter(prefix="/v1/audit-log", tags=["audit"])


class AuditEntryOut(Out):
    id: int
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    method: str
    path: str
    status_code: int
    outcome: str
    client_ip: str | None
    request_id: str | None
    details: dict[str, Any]
    created_at: datetime


@router.get("", name="audit.list", response_model=PageOut[AuditEntryOut])
async def list_audit(
    principal: Auditor,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
    action: str | None = None,
    actor_id: str | None = None,
    since: datetime | None = None,
) -> PageOut[AuditEntryOut]:
    page = await container.audit.list(
        principal.tenant_id, cursor=cursor, limit=limit, action=action, actor_id=actor_id, since=since
    )
    return PageOut(data=[AuditEntryOut.model_validate(e) for e in page.items], next_cursor=page.next_cursor)
