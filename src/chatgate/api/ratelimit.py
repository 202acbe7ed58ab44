"""Per-client-IP rate limiting of the HTTP API (per-key limits live in the auth dependency)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from chatgate.api.problems import problem
from chatgate.observability.metrics import ApiMetrics
from chatgate.ratelimit.base import Limit, RateLimiter

# Health probes and metrics scrapes must always answer; provider webhooks are limited per
# integration by the inbound pipeline, not per IP (Telegram sends from a handful of addresses).
EXEMPT_PREFIXES = ("/health", "/metrics", "/in/")


class IpRateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, limit: Limit, metrics: ApiMetrics) -> None:
        self.app = app
        self.limiter = limiter
        self.limit = limit
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        client_ip = (scope.get("client") or ("unknown", 0))[0]
        decision = await self.limiter.hit(f"ip:{client_ip}", self.limit)
        if not decision.allowed:
            self.metrics.rate_limited_total.labels("ip").inc()
            response = problem(
                429,
                "Too many requests",
                f"too many requests from {client_ip}; retry in {decision.retry_after:.1f} s",
                code="rate_limited",
                retry_after=decision.retry_after,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
