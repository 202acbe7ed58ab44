"""The Twilio adapter: WhatsApp and SMS/MMS over the Programmable Messaging API (2010-04-01).

Credentials (`ctx.credentials`):
- `auth_token`: the account's Auth Token. Used for API calls unless an API key is given, and
  ALWAYS needed for inbound webhooks, which Twilio signs with the Auth Token whatever
  credentials the API is called with. `auth_token_previous` is also accepted on inbound while
  a rotated token is being promoted.
- `api_key_sid` + `api_key_secret` (optional): API calls authenticate with this key instead.
- `webhook_signing_secret` (optional): the SharedKey secret, for webhooks that announce
  `X-Twilio-Webhooks-Signature-Settings: …,algorithm=HMAC_SHA256`.

Config (`ctx.integration.config`): `account_sid`; `from` (`whatsapp:+14155238886`, `+1…`) and/or
`messaging_service_sid`; `channel` (`whatsapp` | `sms`, default from the `from` prefix);
`rate_limit_per_second` and `media_rate_limit_per_second`, which override the operator's
`twilio.sender` / `twilio.sender_media` rate policies (CHATGATE_RATE_LIMIT_POLICIES).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from chatgate.delivery.http import DeliveryNetworkError, HttpResult
from chatgate.domain.errors import (
    AuthRevoked,
    InvalidInput,
    NotFound,
    PermanentProviderError,
    ProviderRateLimited,
    TransientProviderError,
    Unauthenticated,
)
from chatgate.domain.inbound import ProviderEvent
from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.base import (
    Bucket,
    FetchedMedia,
    InboundRequest,
    IntegrationContext,
    OutboundMessage,
    SendResult,
)
from chatgate.providers.twilio import outbound, parsing, signature
from chatgate.providers.twilio.errors import error_for
from chatgate.ratelimit.base import Limit, paced
from chatgate.ratelimit.policies import RatePolicies

DEFAULT_API_BASE = "https://api.twilio.com"
# Twilio queues what a sender cannot send at once, but its documented throughput is about
# 10 messages/s per sender for text (more for short codes and WhatsApp senders that were raised)
# and far less for media: MMS on long codes is about 1 message/s (Twilio's own figures vary
# between 1 and 1.5/s by country and number type). Budgets come from the rate policies
# (`twilio.sender`, `twilio.sender_media`); these apply only to an adapter built without them.
DEFAULT_RATE = 10.0
DEFAULT_MEDIA_RATE = 1.0


def _rate(config: Mapping[str, Any], name: str) -> float | None:
    """A positive rate configured on the integration, or None."""
    try:
        value = float(config.get(name) or 0)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _json_object(result: HttpResult) -> dict[str, Any]:
    try:
        answer = json.loads(result.body or b"{}")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _file_name(content_disposition: str | None) -> str | None:
    if not content_disposition:
        return None
    message = Message()
    message["content-disposition"] = content_disposition
    name = message.get_filename()
    return name or None


class TwilioAdapter:
    kind = IntegrationKind.TWILIO

    def __init__(self, api_base: str = DEFAULT_API_BASE, policies: RatePolicies | None = None) -> None:
        self.api_base = api_base.rstrip("/")
        self.policies = policies  # the operator's table (CHATGATE_RATE_LIMIT_POLICIES), if given

    def _limit(self, config: Mapping[str, Any], name: str, scope: str, default: float) -> Limit:
        """The integration's own rate, else the operator's `twilio.{scope}` policy, else `default`."""
        configured = _rate(config, name)
        if configured is not None:
            return paced(configured)
        if self.policies is not None:
            return self.policies.limit("twilio", scope)
        return paced(default)

    # --- inbound -------------------------------------------------------------------------

    def verify_inbound(self, request: InboundRequest, ctx: IntegrationContext) -> None:
        algorithm = signature.signature_algorithm(request.headers.get(signature.SETTINGS_HEADER))
        if algorithm == signature.HMAC_SHA1:
            secrets = [
                s
                for s in (ctx.credentials.get("auth_token"), ctx.credentials.get("auth_token_previous"))
                if s
            ]
            missing = (
                "this Twilio integration has no auth_token: Twilio signs webhooks with the account's "
                "Auth Token even when the API is called with an API key"
            )
        else:
            secrets = [s for s in (ctx.credentials.get("webhook_signing_secret"),) if s]
            missing = f"this Twilio integration has no webhook_signing_secret for {algorithm} signatures"
        header = request.headers.get(signature.SIGNATURE_HEADER)
        if not header:
            raise Unauthenticated("the X-Twilio-Signature header is missing")
        if not secrets:
            raise Unauthenticated(missing)
        url = signature.public_url(request.url, request.headers, ctx.public_base_url)
        failure: Unauthenticated | None = None
        for secret in secrets:
            try:
                signature.verify(
                    secret=secret,
                    url=url,
                    body=request.body,
                    content_type=request.headers.get("content-type"),
                    signature=header,
                    algorithm=algorithm,
                )
            except Unauthenticated as exc:
                failure = exc
            else:
                return
        assert failure is not None
        raise failure

    def event_id(self, request: InboundRequest) -> str:
        return parsing.event_id(request.body)

    def parse_inbound(self, body: bytes, headers: Mapping[str, str]) -> list[ProviderEvent]:
        return parsing.parse(body)

    @staticmethod
    def routing_keys(body: bytes) -> tuple[str | None, str | None]:
        """(`To`, `MessagingServiceSid`) of a webhook, to route a shared URL to its integration."""
        return parsing.routing_keys(body)

    # --- outbound ------------------------------------------------------------------------

    def send_buckets(self, message: OutboundMessage, ctx: IntegrationContext) -> list[Bucket]:
        """The sender's text budget, plus its media budget when the message carries media.

        Keyed per tenant and sender: Twilio's limits are per sender, and a tenant naming
        someone else's number must not spend that sender's budget. Never raises: a broken
        configuration is reported by `send`.
        """
        config = ctx.integration.config
        try:
            sender = outbound.sender_from_config(config, ctx.credentials)
            key = f"twilio:{ctx.integration.tenant_id}:{sender.account_sid}:{sender.key}"
        except PermanentProviderError:
            key = f"twilio:{ctx.integration.tenant_id}:integration:{ctx.integration.id}"
        buckets = []
        if message.attachments and not message.template:
            media = self._limit(config, "media_rate_limit_per_second", "sender_media", DEFAULT_MEDIA_RATE)
            buckets.append(Bucket(f"{key}:media", media))
        # Last: a worker pauses the last bucket when Twilio answers 429 without naming one.
        buckets.append(Bucket(key, self._limit(config, "rate_limit_per_second", "sender", DEFAULT_RATE)))
        return buckets

    def _auth(self, ctx: IntegrationContext, account_sid: str) -> tuple[str, str]:
        key_sid, key_secret = ctx.credentials.get("api_key_sid"), ctx.credentials.get("api_key_secret")
        if key_sid and key_secret:
            return key_sid, key_secret
        token = ctx.credentials.get("auth_token")
        if token:
            return account_sid, token
        raise AuthRevoked(
            "this Twilio integration has neither an auth_token nor an api_key_sid/api_key_secret"
        )

    def _account_sid(self, ctx: IntegrationContext) -> str:
        account_sid = str(
            ctx.integration.config.get("account_sid") or ctx.credentials.get("account_sid") or ""
        )
        if not outbound.ACCOUNT_SID.match(account_sid):
            raise PermanentProviderError(
                "the Twilio integration needs an account_sid (AC followed by 32 hex digits)"
            )
        return account_sid

    async def _call(
        self,
        ctx: IntegrationContext,
        method: str,
        url: str,
        *,
        account_sid: str,
        form: Sequence[tuple[str, str]] | None = None,
    ) -> HttpResult:
        try:
            return await ctx.provider_api().request(method, url, form=form, auth=self._auth(ctx, account_sid))
        except DeliveryNetworkError as exc:
            raise TransientProviderError(f"Twilio did not answer: {exc.message}") from exc

    async def send(self, message: OutboundMessage, ctx: IntegrationContext) -> SendResult:
        sender = outbound.sender_from_config(ctx.integration.config, ctx.credentials)
        form = outbound.message_form(
            message,
            sender,
            public_base_url=ctx.public_base_url,
            status_callback=outbound.status_callback_url(ctx.public_base_url, ctx.integration.public_id),
        )
        url = outbound.messages_url(self.api_base, sender.account_sid)
        result = await self._call(ctx, "POST", url, account_sid=sender.account_sid, form=form)
        if not 200 <= result.status < 300:
            error = error_for(result.status, result.headers, result.body)
            if isinstance(error, ProviderRateLimited):
                error.details["bucket"] = self.send_buckets(message, ctx)[-1].key
            raise error
        answer = _json_object(result)
        sid = answer.get("sid")
        if not isinstance(sid, str) or not sid:
            raise PermanentProviderError(
                f"Twilio answered {result.status} without a message sid; the message may or may not be queued"
            )
        detail = {k: answer[k] for k in ("status", "to", "from", "messaging_service_sid") if answer.get(k)}
        return SendResult(provider_message_id=sid, detail=detail)

    # --- media and account ---------------------------------------------------------------

    def _check_media_url(self, media_url: str, account_sid: str) -> None:
        """Our credentials go only to the configured Twilio API, and only for this account."""
        target, api = urlsplit(media_url), urlsplit(self.api_base)
        same_origin = (target.scheme.lower(), target.netloc.lower()) == (
            api.scheme.lower(),
            api.netloc.lower(),
        )
        base_path = api.path.rstrip("/")
        if not same_origin or not target.path.startswith(
            f"{base_path}/{outbound.API_VERSION}/Accounts/{account_sid}/"
        ):
            raise InvalidInput("this is not a media URL of this integration's Twilio account")

    async def fetch_media(
        self, provider_file_id: str, ctx: IntegrationContext, *, max_bytes: int
    ) -> FetchedMedia:
        """The bytes behind a `MediaUrl{N}` (basic auth; Twilio redirects to its CDN, followed
        without our credentials since the CDN is another origin). PayloadTooLarge past max_bytes."""
        account_sid = self._account_sid(ctx)
        self._check_media_url(provider_file_id, account_sid)
        try:
            result = await ctx.provider_api().request(
                "GET",
                provider_file_id,
                auth=self._auth(ctx, account_sid),
                max_bytes=max_bytes,
            )
        except DeliveryNetworkError as exc:
            raise TransientProviderError(f"Twilio did not answer: {exc.message}") from exc
        if result.status == 404:
            raise NotFound("Twilio no longer has this media (it may have been deleted)")
        if not 200 <= result.status < 300:
            raise error_for(result.status, result.headers, result.body)
        mime = (result.headers.get("content-type") or "").split(";", 1)[0].strip() or None
        return FetchedMedia(result.body, mime, _file_name(result.headers.get("content-disposition")))

    async def validate_account(self, ctx: IntegrationContext) -> dict[str, Any]:
        """Fetch the account: `{account_sid, friendly_name, status, type}`.

        AuthRevoked when Twilio refuses the credentials, NotFound when the account does not exist.
        """
        account_sid = self._account_sid(ctx)
        url = outbound.account_url(self.api_base, account_sid)
        result = await self._call(ctx, "GET", url, account_sid=account_sid)
        if result.status == 401:
            raise AuthRevoked(
                f"Twilio refused these credentials for account {account_sid}: check the auth token "
                "(or the API key SID and secret)",
                details={"provider_code": "20003", "http_status": 401},
            )
        if result.status == 404:
            raise NotFound(f"Twilio has no account {account_sid} (or these credentials cannot see it)")
        if not 200 <= result.status < 300:
            raise error_for(result.status, result.headers, result.body)
        answer = _json_object(result)
        return {
            "account_sid": str(answer.get("sid") or account_sid),
            "friendly_name": answer.get("friendly_name"),
            "status": answer.get("status"),
            "type": answer.get("type"),
        }
