"""The seeds' WhatsApp endpoints, as facades over the native pipeline.

Seed 003 (WhatsApp Cloud): `GET`/`POST /api/whatsapp/webhook`, `POST /api/whatsapp/send`, bound to
the integration named by CHATGATE_WHATSAPP_SEED_INTEGRATION_ID.
Seed 000 (Twilio): `POST /api/integrations/webhooks/whatsapp/`, routed by the `To` number.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import Field

from chatgate.api.deps import ContainerDep, Manager
from chatgate.api.routes.messages import Accepted, message_out
from chatgate.api.schemas import StrictBody
from chatgate.bootstrap import Container
from chatgate.domain.errors import NotFound
from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.base import InboundRequest
from chatgate.services.sending import SendRequest
from chatgate.store.models import Integration

router = APIRouter(tags=["seed: whatsapp"])

_INBOUND: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored (or a duplicate of a stored event)"},
    401: {"description": "The signature is missing or wrong: nothing was stored"},
    404: {"description": "No integration for this number"},
}


async def _seed_integration(container: Container) -> Integration:
    integration_id = container.settings.whatsapp_seed_integration_id
    if not integration_id:
        raise NotFound(
            "no WhatsApp integration is configured for /api/whatsapp (CHATGATE_WHATSAPP_SEED_INTEGRATION_ID)"
        )
    integration = await container.integrations.by_id_unscoped(integration_id)
    if integration.kind != IntegrationKind.WHATSAPP_CLOUD:
        raise NotFound("CHATGATE_WHATSAPP_SEED_INTEGRATION_ID does not name a WhatsApp Cloud integration")
    return integration


async def _inbound(request: Request) -> InboundRequest:
    return InboundRequest(
        method=request.method,
        url=str(request.url),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.body(),
        query=dict(request.query_params),
    )


@router.get(
    "/api/whatsapp/webhook",
    name="seed.whatsapp_verify",
    response_class=PlainTextResponse,
    summary="Seed 003: Meta's webhook verification (hub.mode, hub.verify_token, hub.challenge)",
    responses={403: {"description": "Wrong verify token or mode"}},
)
async def whatsapp_verify(request: Request, container: ContainerDep) -> PlainTextResponse:
    integration = await _seed_integration(container)
    return PlainTextResponse(await container.whatsapp.handshake(integration, dict(request.query_params)))


@router.post(
    "/api/whatsapp/webhook",
    name="seed.whatsapp_webhook",
    summary="Seed 003: inbound WhatsApp webhooks (X-Hub-Signature-256 checked, unlike the seed)",
    responses=_INBOUND,
)
async def whatsapp_webhook(request: Request, container: ContainerDep) -> JSONResponse:
    integration = await _seed_integration(container)
    outcome = await container.inbound.receive(
        IntegrationKind.WHATSAPP_CLOUD, integration.public_id, await _inbound(request)
    )
    return JSONResponse(outcome.body, status_code=outcome.status)


class WhatsAppSend(StrictBody):
    to: str = Field(min_length=3, max_length=40, description="The customer's number, e.g. 79001234567")
    message: str = Field(min_length=1, max_length=4096)


@router.post(
    "/api/whatsapp/send",
    name="seed.whatsapp_send",
    response_model=Accepted,
    status_code=202,
    summary="Seed 003: send a text (admins); refused outside the 24-hour window",
)
async def whatsapp_send(
    body: WhatsAppSend,
    principal: Manager,
    container: ContainerDep,
    idempotency_key: Annotated[str | None, Header(max_length=191)] = None,
) -> Accepted:
    integration = await _seed_integration(container)
    if integration.tenant_id != principal.tenant_id:
        raise NotFound("no WhatsApp integration is configured for /api/whatsapp in this account")
    request = SendRequest(integration_id=integration.id, to=body.to.lstrip("+"), text=body.message)
    accepted = await container.sending.accept(principal.tenant_id, request, idempotency_key)
    return Accepted(message=message_out(accepted.message), replayed=accepted.replayed)


@router.post(
    "/api/integrations/webhooks/whatsapp/",
    name="seed.twilio_webhook",
    summary="Seed 000: Twilio WhatsApp/SMS webhooks, routed by the To number (X-Twilio-Signature checked)",
    responses=_INBOUND,
)
async def twilio_webhook(request: Request, container: ContainerDep) -> JSONResponse:
    inbound = await _inbound(request)
    integration = await container.whatsapp.route_twilio(inbound)
    outcome = await container.inbound.receive(IntegrationKind.TWILIO, integration.public_id, inbound)
    return JSONResponse(outcome.body, status_code=outcome.status)
