"""Audit every mutating request once its response is known (who, tenant, action, target, outcome).

The action is the route's name (`integrations.create`); the target comes from the path or
from the handler (`request.state.audit_target`) for creations.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatgate.domain.principal import Principal
from chatgate.services.audit import AuditRecord, AuditService

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Provider webhooks are not user actions (and seed 000's Telegram path carries the bot token).
UNAUDITED_PREFIXES = ("/in/", "/api/integrations/webhooks/", "/api/whatsapp/webhook", "/health", "/metrics")


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, audit: AuditService) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in MUTATING
            or scope["path"].startswith(UNAUDITED_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await self.audit.record(self._record(scope, status["code"]))

    @staticmethod
    def _record(scope: Scope, status_code: int) -> AuditRecord:
        state: dict[str, Any] = scope.get("state") or {}
        principal: Principal | None = state.get("principal")
        route = scope.get("route")
        action = getattr(route, "name", None) or f"{scope['method']} {scope['path']}"
        path_params: dict[str, Any] = scope.get("path_params") or {}
        target_type, target_id = state.get("audit_target") or (None, None)
        if target_id is None and path_params:
            key, value = next(iter(path_params.items()))
            target_type, target_id = key.removesuffix("_id"), str(value)
        return AuditRecord(
            tenant_id=principal.tenant_id if principal else state.get("audit_tenant_id"),
            actor_type=str(principal.actor_type) if principal else "anonymous",
            actor_id=principal.actor_id if principal else state.get("audit_actor"),
            action=action,
            method=scope["method"],
            path=getattr(route, "path", None) or "<unmatched>",
            status_code=status_code,
            client_ip=(scope.get("client") or ("", 0))[0] or None,
            request_id=state.get("request_id"),
            target_type=target_type,
            target_id=target_id,
            details=state.get("audit_details") or {},
        )
