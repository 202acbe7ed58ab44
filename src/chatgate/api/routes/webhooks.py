"""Tenant webhook endpoints (Standard Webhooks), their deliveries, attempts and recovery."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from chatgate.api.deps import ContainerDep, Manager
from chatgate.api.schemas import Out, PageLimit, PageOut, StrictBody
from chatgate.services.webhooks import EndpointSpec
from chatgate.store.models import WebhookEndpoint

router = APIRouter(prefix="/v1", tags=["webhooks"])

Ordering = Literal["none", "conversation"]
Format = Literal["standard", "lovable"]


class EndpointBody(StrictBody):
    url: str | None = Field(
        None, max_length=2000, description="https URL (http only if the operator allows it)"
    )
    description: str | None = Field(None, max_length=500)
    event_types: list[str] | None = Field(None, description="Only these event types; empty or absent: all")
    integration_ids: list[str] | None = Field(
        None, description="Only events of these integrations; empty: all"
    )
    enabled: bool | None = None
    headers: dict[str, str] | None = Field(None, description="Extra headers sent with every delivery")
    rate_limit_per_second: float | None = Field(None, gt=0, le=10_000)
    ordering: Ordering | None = Field(
        None, description="`conversation`: a failing event holds back later events of its conversation"
    )
    format: Format | None = Field(
        None, description="`standard` envelope, or `lovable` (seed 002's CRM format)"
    )
    format_options: dict[str, Any] | None = Field(
        None, description="For `lovable`: project_id, account_phone"
    )
    format_secret: str | None = Field(
        None, max_length=500, description="For `lovable`: sent as X-Lovable-Secret"
    )


class EndpointOut(Out):
    id: str
    url: str
    description: str
    event_types: list[str]
    integration_ids: list[str]
    enabled: bool
    disabled_reason: str | None
    headers: dict[str, Any]
    rate_limit_per_second: float | None
    ordering: str
    format: str
    format_options: dict[str, Any]
    failing_since: datetime | None
    secret_rotating_until: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: WebhookEndpoint) -> EndpointOut:
        return cls(
            id=e.id,
            url=e.url,
            description=e.description,
            event_types=e.event_types,
            integration_ids=e.integration_ids,
            enabled=e.enabled,
            disabled_reason=e.disabled_reason,
            headers=e.custom_headers,
            rate_limit_per_second=e.rate_limit_per_second,
            ordering=e.ordering,
            format=e.format,
            format_options=e.format_options,
            failing_since=e.failing_since,
            secret_rotating_until=e.previous_secret_expires_at,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="The `whsec_…` signing secret. Shown once: store it now")


class RotateBody(StrictBody):
    grace_hours: float = Field(24, ge=0, le=24 * 7, description="How long the old secret keeps signing too")


class RecoverBody(StrictBody):
    since: datetime = Field(description="Re-deliver failed and dead deliveries created since then")


class RecoverOut(BaseModel):
    requeued: int
    limit: int


class DeliveryOut(Out):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    conversation_id: str | None
    status: str = Field(
        description="pending, succeeded, failed (will retry), dead (retries exhausted) or skipped"
    )
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class AttemptOut(Out):
    attempted_at: datetime
    url: str
    request_headers: dict[str, Any]
    response_status: int | None
    response_body: str | None
    duration_ms: float | None
    error: str | None


class DeliveryDetail(DeliveryOut):
    attempts_log: list[AttemptOut]


def _spec(body: EndpointBody) -> EndpointSpec:
    return EndpointSpec(
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        integration_ids=body.integration_ids,
        custom_headers=body.headers,
        rate_limit_per_second=body.rate_limit_per_second,
        ordering=body.ordering,
        format=body.format,
        format_options=body.format_options,
        format_secret=body.format_secret,
        enabled=body.enabled,
        unset={"rate_limit_per_second"} if "rate_limit_per_second" in body.model_fields_set else set(),
    )


@router.post(
    "/webhook-endpoints", name="webhook_endpoints.create", response_model=EndpointWithSecret, status_code=201
)
async def create_endpoint(
    body: EndpointBody, principal: Manager, container: ContainerDep, request: Request
) -> EndpointWithSecret:
    endpoint, secret = await container.webhooks.create(principal.tenant_id, _spec(body))
    request.state.audit_target = ("webhook_endpoint", endpoint.id)
    return EndpointWithSecret(**EndpointOut.of(endpoint).model_dump(), secret=secret)


@router.get("/webhook-endpoints", name="webhook_endpoints.list", response_model=PageOut[EndpointOut])
async def list_endpoints(
    principal: Manager, container: ContainerDep, cursor: str | None = None, limit: PageLimit = 50
) -> PageOut[EndpointOut]:
    page = await container.webhooks.endpoints(principal.tenant_id, cursor=cursor, limit=limit)
    return PageOut(data=[EndpointOut.of(e) for e in page.items], next_cursor=page.next_cursor)


@router.get("/webhook-endpoints/{endpoint_id}", name="webhook_endpoints.get", response_model=EndpointOut)
async def get_endpoint(endpoint_id: str, principal: Manager, container: ContainerDep) -> EndpointOut:
    return EndpointOut.of(await container.webhooks.endpoint(principal.tenant_id, endpoint_id))


@router.patch("/webhook-endpoints/{endpoint_id}", name="webhook_endpoints.update", response_model=EndpointOut)
async def update_endpoint(
    endpoint_id: str, body: EndpointBody, principal: Manager, container: ContainerDep
) -> EndpointOut:
    return EndpointOut.of(await container.webhooks.update(principal.tenant_id, endpoint_id, _spec(body)))


@router.delete("/webhook-endpoints/{endpoint_id}", name="webhook_endpoints.delete", status_code=204)
async def delete_endpoint(endpoint_id: str, principal: Manager, container: ContainerDep) -> Response:
    await container.webhooks.delete(principal.tenant_id, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    name="webhook_endpoints.rotate_secret",
    response_model=EndpointWithSecret,
    summary="New signing secret; the old one keeps signing (a second v1 signature) during the grace period",
)
async def rotate_secret(
    endpoint_id: str, body: RotateBody, principal: Manager, container: ContainerDep
) -> EndpointWithSecret:
    endpoint, secret = await container.webhooks.rotate_secret(
        principal.tenant_id, endpoint_id, timedelta(hours=body.grace_hours)
    )
    return EndpointWithSecret(**EndpointOut.of(endpoint).model_dump(), secret=secret)


@router.post(
    "/webhook-endpoints/{endpoint_id}/recover",
    name="webhook_endpoints.recover",
    response_model=RecoverOut,
    status_code=202,
    summary="Re-deliver everything this endpoint failed since a time (at most 1000 per call)",
)
async def recover(
    endpoint_id: str, body: RecoverBody, principal: Manager, container: ContainerDep
) -> RecoverOut:
    count = await container.webhooks.recover(principal.tenant_id, endpoint_id, body.since)
    return RecoverOut(requeued=count, limit=1000)


@router.get(
    "/webhook-deliveries",
    name="webhook_deliveries.list",
    response_model=PageOut[DeliveryOut],
    summary="The delivery log; `status=dead` lists dead letters",
)
async def list_deliveries(
    principal: Manager,
    container: ContainerDep,
    cursor: str | None = None,
    limit: PageLimit = 50,
    endpoint_id: str | None = None,
    status: Literal["pending", "succeeded", "failed", "dead", "skipped"] | None = None,
) -> PageOut[DeliveryOut]:
    page = await container.webhooks.deliveries(
        principal.tenant_id, cursor=cursor, limit=limit, endpoint_id=endpoint_id, status=status
    )
    return PageOut(data=[DeliveryOut.model_validate(d) for d in page.items], next_cursor=page.next_cursor)


@router.get("/webhook-deliveries/{delivery_id}", name="webhook_deliveries.get", response_model=DeliveryDetail)
async def get_delivery(delivery_id: str, principal: Manager, container: ContainerDep) -> DeliveryDetail:
    delivery, attempts = await container.webhooks.delivery(principal.tenant_id, delivery_id)
    return DeliveryDetail(
        **DeliveryOut.model_validate(delivery).model_dump(),
        attempts_log=[AttemptOut.model_validate(a) for a in attempts],
    )


@router.post(
    "/webhook-deliveries/{delivery_id}/resend",
    name="webhook_deliveries.resend",
    response_model=DeliveryOut,
    status_code=202,
)
async def resend(delivery_id: str, principal: Manager, container: ContainerDep) -> DeliveryOut:
    return DeliveryOut.model_validate(await container.webhooks.resend(principal.tenant_id, delivery_id))
