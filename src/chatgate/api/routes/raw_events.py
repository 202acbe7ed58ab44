"""Raw provider events as received, for admins: inspect parse failures, replay any event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from chatgate.api.deps import ContainerDep, Manager
from chatgate.api.schemas import Out, PageLimit, PageOut

router = APIRouter(prefix="/v1/raw-events", tags=["raw events"])


class RawEventOut(Out):
    id: str
    integration_id: str
    kind: str
    provider_event_id: str
    status: str
    error: str | None
    received_at: datetime
    processed_at: datetime | None


class RawEventDetail(RawEventOut):
    headers: dict[str, Any]
    body: str


@router.get("", name="raw_events.list", response_model=PageOut[RawEventOut])
async def list_raw_events(
    principal: Manager,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
    status: str | None = None,
    integration_id: str | None = None,
) -> PageOut[RawEventOut]:
    page = await container.conversations.raw_events(
        principal.tenant_id, cursor=cursor, limit=limit, status=status, integration_id=integration_id
    )
    return PageOut(data=[RawEventOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/{raw_event_id}", name="raw_events.get", response_model=RawEventDetail)
async def get_raw_event(raw_event_id: str, principal: Manager, container: ContainerDep) -> RawEventDetail:
    raw = await container.conversations.raw_event(principal.tenant_id, raw_event_id)
    base = RawEventOut.model_validate(raw).model_dump()
    return RawEventDetail(**base, headers=raw.headers, body=raw.body.decode("utf-8", errors="replace"))


@router.post("/{raw_event_id}/replay", name="raw_events.replay", response_model=RawEventOut, status_code=202)
async def replay_raw_event(raw_event_id: str, principal: Manager, container: ContainerDep) -> RawEventOut:
    """Process the event again; idempotent, so only missing effects are added."""
    return RawEventOut.model_validate(await container.conversations.replay(principal.tenant_id, raw_event_id))
