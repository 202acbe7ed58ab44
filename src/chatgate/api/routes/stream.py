"""The live event stream: Server-Sent Events and a WebSocket, both resumable by sequence.

Both read the same EventFeed as the pull API, so a reconnect with the last sequence seen
delivers exactly what was missed. Disconnects end the feed: SSE through Starlette's
disconnect listener (which cancels the body), the WebSocket through its receive loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, cast

from fastapi import APIRouter, Header, Query, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

from chatgate.api.deps import ContainerDep, Reader
from chatgate.api.routes.events import After, IntegrationFilter, Types
from chatgate.bootstrap import Container
from chatgate.domain.access import Permission
from chatgate.domain.errors import (
    ChatgateError,
    InvalidInput,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
)
from chatgate.domain.events import EventEnvelope
from chatgate.domain.principal import Principal
from chatgate.ratelimit.base import Limit
from chatgate.security.api_keys import PREFIX as API_KEY_PREFIX
from chatgate.services.event_feed import parse_event_types

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/stream", tags=["events"])

HEARTBEAT_SECONDS = 15.0  # under the common 30-60 s idle timeouts of proxies and load balancers
RETRY_MILLISECONDS = 3000  # EventSource's reconnect delay

# WebSocket close codes: 4000 + the HTTP status the same failure gets on the REST API.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_INVALID = 4422
CLOSE_RATE_LIMITED = 4429
_CLOSE_INTERNAL = 1011


def sse_frame(envelope: EventEnvelope) -> bytes:
    return (
        f"id: {envelope.sequence}\nevent: {envelope.type.value}\ndata: {envelope.model_dump_json()}\n\n"
    ).encode()


async def _sse_body(events: AsyncGenerator[EventEnvelope | None]) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    async with contextlib.aclosing(events):
        async for envelope in events:
            yield b": ping\n\n" if envelope is None else sse_frame(envelope)


@router.get(
    "",
    name="stream.sse",
    response_class=StreamingResponse,
    summary="Live events as Server-Sent Events",
    responses={200: {"content": {"text/event-stream": {}}, "description": "An endless event stream"}},
)
async def stream_sse(
    principal: Reader,
    container: ContainerDep,
    after: After = 0,
    types: Types = None,
    integration_id: IntegrationFilter = None,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID", ge=0, description="Sent by EventSource on reconnect; wins over `after`"
        ),
    ] = None,
) -> StreamingResponse:
    """Each event is `id: <sequence>`, `event: <type>`, `data: <envelope JSON>`; a `: ping`
    comment arrives every 15 s when nothing happens. Reconnect with `Last-Event-ID` (browsers
    do it for you) or `after=` to resume after the last sequence you saw: nothing is missed."""
    feed = container.feed
    events = feed.stream(
        principal.tenant_id,
        last_event_id if last_event_id is not None else after,
        parse_event_types(types),
        integration_id,
        heartbeat=HEARTBEAT_SECONDS,
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx: do not buffer
    return StreamingResponse(_sse_body(events), media_type="text/event-stream", headers=headers)


@router.websocket("/ws", name="stream.ws")
async def stream_ws(
    websocket: WebSocket,
    after: Annotated[int, Query(ge=0)] = 0,
    types: str | None = None,
    integration_id: Annotated[str | None, Query(max_length=64)] = None,
    token: str | None = None,
) -> None:
    """Messages are envelope JSON objects. `token` (an API key or access token) is for browsers,
    which cannot set headers on a WebSocket. Clients may send `{"ack": <sequence>}`; it is
    accepted and ignored: resuming is by `after=`."""
    container = cast(Container, websocket.app.state.container)
    await websocket.accept()  # first, so that a refusal can carry a close code and reason
    try:
        principal = await _authenticate(websocket, container, token)
        wanted = parse_event_types(types)
    except ChatgateError as exc:
        await websocket.close(_close_code(exc), exc.message.encode()[:120].decode("utf-8", "ignore"))
        return
    feed = container.feed
    events = feed.stream(principal.tenant_id, after, wanted, integration_id, heartbeat=HEARTBEAT_SECONDS)
    sender = asyncio.create_task(_send_events(websocket, events), name="stream.ws.send")
    receiver = asyncio.create_task(_read_client(websocket), name="stream.ws.receive")
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)
    failure = sender.exception() if sender in done and not sender.cancelled() else None
    if failure is not None and not isinstance(failure, WebSocketDisconnect | OSError):
        log.error("event stream failed: %s", type(failure).__name__, exc_info=failure)
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await websocket.close(_CLOSE_INTERNAL, "the event stream failed; reconnect with after=")


async def _send_events(websocket: WebSocket, events: AsyncGenerator[EventEnvelope | None]) -> None:
    async with contextlib.aclosing(events):
        async for envelope in events:
            if envelope is not None:  # idle ticks: the server's WebSocket pings keep the line alive
                await websocket.send_text(envelope.model_dump_json())


async def _read_client(websocket: WebSocket) -> None:
    """Returns when the client goes away. Client messages (acks) need no answer: the client
    resumes with `after=`, so the server keeps no per-client position."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _authenticate(websocket: WebSocket, container: Container, token: str | None) -> Principal:
    auth = container.auth
    api_key = websocket.headers.get("x-api-key")
    scheme, _, credential = websocket.headers.get("authorization", "").partition(" ")
    presented = credential.strip() if scheme.lower() == "bearer" else ""
    if api_key:
        principal = await auth.authenticate_api_key(api_key)
    elif presented or token:
        secret = presented or token or ""
        if secret.startswith(API_KEY_PREFIX):
            principal = await auth.authenticate_api_key(secret)
        else:
            principal = await auth.authenticate_bearer(secret)
    else:
        raise Unauthenticated(
            "send X-API-Key, Authorization: Bearer, or ?token= (an API key or access token)"
        )
    if not principal.can(Permission.READ):
        raise PermissionDenied("the event stream needs the 'read' permission")
    settings = container.settings
    limit = Limit(settings.rate_limit_key_per_second, settings.rate_limit_key_burst)
    decision = await container.rate_limiter.hit(f"key:{principal.rate_key}", limit)
    if not decision.allowed:
        raise RateLimited("rate limit for this credential exceeded", retry_after=decision.retry_after)
    return principal


def _close_code(error: ChatgateError) -> int:
    codes: list[tuple[type[ChatgateError], int]] = [
        (Unauthenticated, CLOSE_UNAUTHENTICATED),
        (PermissionDenied, CLOSE_FORBIDDEN),
        (RateLimited, CLOSE_RATE_LIMITED),
        (InvalidInput, CLOSE_INVALID),
    ]
    return next((code for cls, code in codes if isinstance(error, cls)), _CLOSE_INTERNAL)
