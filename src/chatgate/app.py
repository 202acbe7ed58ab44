"""The ASGI application: routes, middleware, error mapping, OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from chatgate import __version__
from chatgate.api.audit import AuditMiddleware
from chatgate.api.errors import install_error_handlers
from chatgate.api.inbound_fast import InboundFastPath, inbound_target
from chatgate.api.middleware import RequestContextMiddleware
from chatgate.api.ratelimit import IpRateLimitMiddleware
from chatgate.api.routes import (
    api_keys,
    audit,
    auth,
    channels,
    conversations,
    events,
    health,
    inbound,
    integrations,
    media,
    messages,
    raw_events,
    seed_lovable,
    seed_telegram,
    seed_whatsapp,
    stream,
    telegram_accounts,
    tenant,
    users,
    webhooks,
)
from chatgate.bootstrap import Container
from chatgate.ratelimit.base import Limit
from chatgate.workers.runner import run_workers

DESCRIPTION = """
chatgate connects your tenants' Telegram bots and accounts, WhatsApp numbers and calendars,
and gives your application one API, one event stream and one signed webhook.

Authenticate with an API key (`X-API-Key: cgk_…` or `Authorization: Bearer cgk_…`) or a user
access token from `POST /v1/auth/login`. Errors are `application/problem+json` (RFC 9457).
Lists use cursor pagination: pass `next_cursor` back as `cursor`.
"""


class ChatgateApi(FastAPI):
    """FastAPI, except that provider webhooks are served before the framework sees them."""

    inbound: InboundFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = inbound_target(scope) if self.inbound is not None else None
        if target is not None and self.inbound is not None:
            await self.inbound.serve(scope, receive, send, *target)
            return
        await super().__call__(scope, receive, send)


def create_app(container: Container, *, manage_lifecycle: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await container.start()
        stop = asyncio.Event()
        workers = (
            asyncio.create_task(run_workers(container, stop), name="in-process-workers")
            if container.settings.run_workers_in_api
            else None
        )
        bridge = (
            asyncio.create_task(container.event_bridge.run(stop), name="event-bridge")
            if container.event_bridge is not None
            else None
        )
        try:
            yield
        finally:
            stop.set()
            if workers is not None:
                await workers
            if bridge is not None:
                await bridge
            if manage_lifecycle:
                await container.aclose()

    app = ChatgateApi(
        title="chatgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        # Route names (`integrations.create`) double as operation ids and audit actions.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.container = container
    install_error_handlers(app)
    for module in (
        health,
        auth,
        tenant,
        users,
        api_keys,
        integrations,
        messages,
        media,
        conversations,
        raw_events,
        webhooks,
        events,
        stream,
        audit,
        inbound,
        channels,
        seed_telegram,
        seed_whatsapp,
        seed_lovable,
        telegram_accounts,
    ):
        app.include_router(module.router)

    settings = container.settings
    # Added innermost first: audit sees the final status; the request context wraps everything.
    app.add_middleware(AuditMiddleware, audit=container.audit)
    app.add_middleware(
        IpRateLimitMiddleware,
        limiter=container.rate_limiter,
        limit=Limit(settings.rate_limit_ip_per_second, settings.rate_limit_ip_burst),
        metrics=container.metrics,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        metrics=container.metrics,
        max_body_bytes=settings.max_body_bytes,
        upload_limits={"/v1/media": settings.max_upload_bytes},
    )
    # Provider webhooks skip the framework entirely (see api/inbound_fast.py).
    app.inbound = InboundFastPath(gateway=container.inbound, metrics=container.metrics)
    return app
