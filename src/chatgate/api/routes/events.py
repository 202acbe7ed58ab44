"""The pull API over the tenant event log, with optional long polling."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from chatgate.api.deps import ContainerDep, Reader
from chatgate.domain.events import EventEnvelope, EventType
from chatgate.services.event_feed import parse_event_types

router = APIRouter(prefix="/v1/events", tags=["events"])

_TYPES = ", ".join(f"`{t.value}`" for t in EventType)

After = Annotated[
    int, Query(ge=0, description="Return events with a sequence greater than this (0: from the start)")
]
Types = Annotated[
    str | None,
    Query(
        description=f"Comma-separated event types to return (default: all). Any of {_TYPES}",
        examples=["message.received,message.status"],
    ),
]
IntegrationFilter = Annotated[str | None, Query(max_length=64, description="Only events of this integration")]


class EventPage(BaseModel):
    data: list[EventEnvelope] = Field(description="Events in sequence order")
    next_after: int = Field(
        description="Pass as `after` for the next page: the last sequence returned, or your `after`"
    )


@router.get(
    "",
    name="events.list",
    response_model=EventPage,
    summary="Read the event log (pull, with optional long polling)",
)
async def list_events(
    principal: Reader,
    container: ContainerDep,
    after: After = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Events per page (1-500)")] = 100,
    types: Types = None,
    integration_id: IntegrationFilter = None,
    wait: Annotated[
        float,
        Query(ge=0, le=30, description="Long poll: when nothing is there yet, wait up to this many seconds"),
    ] = 0,
) -> EventPage:
    """Events of your tenant after a sequence number, oldest first.

    Keep `next_after` and pass it back as `after` to resume exactly where you stopped: every
    event has a per-tenant `sequence`, so nothing is skipped or repeated. With `wait`, the
    request returns as soon as a matching event exists, or with an empty `data` when the wait
    is over; loop on it for near-real-time delivery without a persistent connection.
    """
    feed = container.feed
    envelopes = await feed.wait_page(
        principal.tenant_id,
        after,
        limit,
        parse_event_types(types),
        integration_id,
        wait_seconds=wait,
    )
    return EventPage(data=envelopes, next_after=envelopes[-1].sequence if envelopes else after)
