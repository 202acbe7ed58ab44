"""Provider webhooks: `POST /in/{kind}/{public_id}`. No token in the URL, ever.

Authenticated by the provider's own signature over the raw bytes (fail closed: 401), then
stored durably; the 200 means the event is committed and will be processed exactly once.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from chatgate.api.deps import ContainerDep
from chatgate.providers.base import InboundRequest

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
