"""Provider webhooks: `POST /in/{kind}/{public_id}`. No token in the URL, ever.

Authenticated by the provider's own signature over the raw bytes (fail closed: 401), then
stored durably; the 200 means the event is committed and will be processed exactly once.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from chatgate.api.deps import ContainerDep
from chatgate.domain.errors import NotFound
from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.base import InboundRequest
from chatgate.services.inbound_gateway import KIND_ALIASES

router = APIRouter(tags=["inbound"])

MAX_INBOUND_BYTES = 4 * 1024 * 1024


@router.post(
    "/in/{kind}/{public_id}",
    name="inbound.receive",
    summary="Receive a provider webhook",
    responses={
        200: {"description": "Stored (or a duplicate of a stored event)"},
        401: {"description": "The request failed the provider's authenticity check"},
        404: {"description": "No such integration"},
        503: {"description": "Could not be stored; the provider should retry"},
    },
)
async def receive(kind: str, public_id: str, request: Request, container: ContainerDep) -> JSONResponse:
    body = await request.body()
    inbound = InboundRequest(
        method=request.method,
        url=str(request.url),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        query=dict(request.query_params),
    )
    outcome = await container.inbound.receive(kind, public_id, inbound)
    return JSONResponse(outcome.body, status_code=outcome.status)


@router.get(
    "/in/{kind}/{public_id}",
    name="inbound.verify",
    summary="Answer a provider's subscription handshake (WhatsApp Cloud: hub.challenge)",
    response_class=PlainTextResponse,
    responses={403: {"description": "Wrong hub.verify_token or hub.mode"}},
)
async def verify(kind: str, public_id: str, request: Request, container: ContainerDep) -> PlainTextResponse:
    if KIND_ALIASES.get(kind, kind) != IntegrationKind.WHATSAPP_CLOUD:
        raise NotFound(f"'{kind}' webhooks have no subscription handshake")
    integration = await container.integrations.by_public_id(IntegrationKind.WHATSAPP_CLOUD, public_id)
    challenge = await container.whatsapp.handshake(integration, dict(request.query_params))
    return PlainTextResponse(challenge)
