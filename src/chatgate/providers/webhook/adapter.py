"""The webhook provider adapter: Standard Webhooks in both directions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

from chatgate.delivery import signing
from chatgate.delivery.http import DeliveryNetworkError
from chatgate.domain.errors import (
    AuthRevoked,
    ContentRejected,
    InvalidInput,
    PermanentProviderError,
    ProviderRateLimited,
    TransientProviderError,
    Unauthenticated,
)
from chatgate.domain.inbound import ProviderEvent
from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.base import (
    Bucket,
    InboundRequest,
    IntegrationContext,
    OutboundMessage,
    SendResult,
)
from chatgate.providers.webhook.parsing import parse
from chatgate.ratelimit.base import paced

DEFAULT_RATE = 100.0  # sends per second to one receiving site, unless configured


def _retry_after(headers: Mapping[str, str], default: float) -> float:
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def _no_inbound_secret(request: InboundRequest) -> None:
    raise Unauthenticated("this webhook integration has no inbound secret configured")


class WebhookAdapter:
    kind = IntegrationKind.WEBHOOK

    def verify_inbound(self, request: InboundRequest, ctx: IntegrationContext) -> None:
        self.inbound_verifier(ctx)(request)

    def inbound_verifier(self, ctx: IntegrationContext) -> Callable[[InboundRequest], None]:
        """`verify_inbound` for one integration, its keys decoded and their HMAC state made
        once (the inbound gateway keeps it with the integration's cache entry)."""
        credentials = ctx.credentials
        candidates = tuple(
            s for s in (credentials.get("inbound_secret"), credentials.get("inbound_secret_previous")) if s
        )
        if not candidates:
            return _no_inbound_secret
        verifier = signing.KeyedVerifier(signing.secret_keys(candidates))
        clock = ctx.clock

        def verify(request: InboundRequest) -> None:
            verifier.check(request.headers, request.body, now=clock().timestamp())

        return verify

    def event_id(self, request: InboundRequest) -> str:
        value = request.headers.get(signing.HEADER_ID)
        if not value:
            raise InvalidInput(f"the {signing.HEADER_ID} header is required")
        return value[:191]

    def parse_inbound(self, body: bytes, headers: Mapping[str, str]) -> list[ProviderEvent]:
        return parse(body)

    def send_buckets(self, message: OutboundMessage, ctx: IntegrationContext) -> list[Bucket]:
        rate = float(ctx.integration.config.get("rate_limit_per_second") or DEFAULT_RATE)
        return [Bucket(f"webhook:{ctx.integration.id}", paced(rate))]

    async def send(self, message: OutboundMessage, ctx: IntegrationContext) -> SendResult:
        url = ctx.integration.config.get("outbound_url")
        secret = ctx.credentials.get("outbound_secret")
        if not isinstance(url, str) or not secret:
            raise PermanentProviderError(
                "this webhook integration has no outbound_url/outbound_secret configured"
            )
        body = json.dumps(
            {
                "type": "message.send",
                "id": message.message_id,
                "conversation": {"id": message.recipient},
                "text": message.text,
                "attachments": message.attachments,
                "reply_to": message.reply_to_provider_id,
                "buttons": message.buttons,
            },
            separators=(",", ":"),
        ).encode()
        headers = signing.headers(secret, message.message_id, int(time.time()), body)
        headers["content-type"] = "application/json"
        try:
            result = await ctx.http.post(url, body=body, headers=headers)
        except DeliveryNetworkError as exc:
            raise TransientProviderError(f"the receiving site did not answer: {exc.message}") from exc
        status = result.status
        if 200 <= status < 300:
            provider_id = message.message_id
            try:
                answer = json.loads(result.body or b"{}")
                if isinstance(answer, dict) and isinstance(answer.get("message_id"), str | int):
                    provider_id = str(answer["message_id"])
            except ValueError:
                pass
            return SendResult(provider_message_id=provider_id)
        reason = f"the receiving site answered {status}"
        if status == 429:
            raise ProviderRateLimited(reason, retry_after=_retry_after(result.headers, 1.0))
        if status in (401, 403):
            raise AuthRevoked(reason)
        if status in (408, 425) or status >= 500:
            raise TransientProviderError(reason)
        if status == 413 or status == 422:
            raise ContentRejected(reason)
        raise PermanentProviderError(reason)
