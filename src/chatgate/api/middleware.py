"""Pure ASGI middleware: request id, body limit, metrics, access log, last-resort error handling."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatgate.api.problems import problem
from chatgate.domain.errors import PayloadTooLarge
from chatgate.observability.context import request_id_var
from chatgate.observability.metrics import ApiMetrics

log = logging.getLogger("chatgate.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


class _BodyTooLarge(HTTPException):
    """An HTTPException, because FastAPI re-raises those from body parsing (others become 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ApiMetrics,
        max_body_bytes: int,
        upload_limits: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.upload_limits = upload_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        # A fresh per-request state: some servers hand every request the same lifespan-state
        # dict, and a principal left in it by one request must never be seen by the next.
        scope["state"] = {**(scope.get("state") or {}), "request_id": request_id}
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        limit = self.upload_limits.get(scope["path"], self.max_body_bytes)
        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await self._reject_large(scope, receive, send_with_id, limit)
            else:
                await self.app(scope, self._limited(receive, limit), send_with_id)
        except _BodyTooLarge:
            if not status_holder["started"]:
                await self._reject_large(scope, receive, send_with_id, limit)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], route_template(scope))
            if not status_holder["started"]:
                response = problem(
                    500,
                    "Internal error",
                    "the server failed to handle this request; it has been logged with the request id",
                    code="internal_error",
                )
                await response(scope, receive, send_with_id)
        finally:
            self._observe(scope, int(status_holder["status"]), time.perf_counter() - started)
            request_id_var.reset(token)

    def _limited(self, receive: Receive, limit: int) -> Receive:
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge(limit)
            return message

        return limited_receive

    async def _reject_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        error = PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")
        response = problem(
            413, "Payload too large", error.message, code=error.code, instance=scope.get("path")
        )
        await response(scope, receive, send)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        method = scope["method"]
        route = route_template(scope)
        self.metrics.request_duration.labels(method, route).observe(elapsed)
        self.metrics.request_total.labels(method, route, str(status)).inc()
        if status >= 400:
            self.metrics.request_error_total.labels(method, route, str(status)).inc()
        extra: dict[str, Any] = {
            "http_method": method,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "client_ip": (scope.get("client") or ("", 0))[0],
        }
        log.info("%s %s %s", method, route, status, extra=extra)
