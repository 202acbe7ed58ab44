"""The WhatsApp Business Cloud API adapter: signed Graph webhooks in, Graph API calls out.

Credentials: `access_token` (a system-user token with whatsapp_business_messaging),
`app_secret` (signs webhooks), `verify_token` (the GET subscription handshake). Config:
`phone_number_id` (Meta's id of the business number, not the number itself), `waba_id`,
`rate_limit_per_second` (overrides the operator's `whatsapp_cloud.number` rate policy, by default
80/s, the Cloud API's default throughput per number).

Beyond the adapter protocol: `fetch_media` (MediaFetcher), `mark_read`, `upload_media`,
`validate_number` (a connect-time check), and the routing helpers `phone_number_ids` and
`split_by_phone_number` for webhooks that batch several numbers of one app.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chatgate.domain.errors import (
    AuthRevoked,
    ContentRejected,
    NotFound,
    PayloadTooLarge,
    PermanentProviderError,
    TransientProviderError,
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
from chatgate.providers.http import FilePart
from chatgate.providers.whatsapp_cloud import routing
from chatgate.providers.whatsapp_cloud.errors import graph_error, is_not_found, parse_error
from chatgate.providers.whatsapp_cloud.graph import GraphClient
from chatgate.providers.whatsapp_cloud.outbound import build_bodies, needs_upload, read_receipt_body
from chatgate.providers.whatsapp_cloud.parsing import parse_webhook
from chatgate.providers.whatsapp_cloud.signature import (
    SIGNATURE_HEADER,
    verify_signature,
    verify_subscription,
)
from chatgate.ratelimit.base import paced
from chatgate.ratelimit.policies import RatePolicies

DEFAULT_GRAPH_BASE = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"
DEFAULT_RATE = 80.0  # messages per second per business number (Cloud API default throughput)
NUMBER_FIELDS = ("display_phone_number", "verified_name", "quality_rating")
_PENDING_UPLOAD = "pending-upload"

__all__ = ["WhatsAppCloudAdapter", "verify_subscription"]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except ValueError:
        raise TransientProviderError(f"the Graph API answered {what} with a body that is not JSON") from None
    if not isinstance(answer, dict):
        raise TransientProviderError(f"the Graph API answered {what} with an unexpected body")
    return answer


class WhatsAppCloudAdapter:
    kind = IntegrationKind.WHATSAPP_CLOUD

    # Routing helpers, for the inbound endpoint that receives one app's webhooks.
    phone_number_ids = staticmethod(routing.phone_number_ids)
    split_by_phone_number = staticmethod(routing.split_by_phone_number)

    def __init__(
        self,
        graph_base: str = DEFAULT_GRAPH_BASE,
        api_version: str = DEFAULT_API_VERSION,
        policies: RatePolicies | None = None,
    ) -> None:
        self.graph_base = graph_base.rstrip("/")
        self.api_version = api_version
        self.policies = policies  # the operator's table (CHATGATE_RATE_LIMIT_POLICIES), if given

    def graph(self, ctx: IntegrationContext) -> GraphClient:
        return GraphClient.for_context(ctx, self.graph_base, self.api_version)

    @staticmethod
    def phone_number_id(ctx: IntegrationContext) -> str:
        number = ctx.integration.config.get("phone_number_id")
        if not isinstance(number, str | int) or not str(number):
            raise PermanentProviderError("this WhatsApp integration has no phone_number_id configured")
        return str(number)

    # Inbound

    def verify_inbound(self, request: InboundRequest, ctx: IntegrationContext) -> None:
        verify_signature(
            ctx.credentials.get("app_secret"), request.body, request.headers.get(SIGNATURE_HEADER)
        )

    def verify_subscription(self, query: Mapping[str, str], ctx: IntegrationContext) -> str:
        """The GET handshake for this integration (PermissionDenied → 403)."""
        return verify_subscription(query, ctx.credentials.get("verify_token") or "")

    def event_id(self, request: InboundRequest) -> str:
        return routing.event_key(request.body)

    def parse_inbound(self, body: bytes, headers: Mapping[str, str]) -> list[ProviderEvent]:
        return parse_webhook(body)

    # Outbound

    def send_buckets(self, message: OutboundMessage, ctx: IntegrationContext) -> list[Bucket]:
        """One budget per business number: the integration's `rate_limit_per_second`, else the
        operator's `whatsapp_cloud.number` policy, else Meta's default throughput."""
        config = ctx.integration.config
        configured = config.get("rate_limit_per_second")
        if configured:
            limit = paced(float(configured))
        elif self.policies is not None:
            limit = self.policies.limit("whatsapp_cloud", "number")
        else:
            limit = paced(DEFAULT_RATE)
        number = config.get("phone_number_id") or ctx.integration.id
        return [Bucket(f"wa:{number}", limit)]

    async def send(self, message: OutboundMessage, ctx: IntegrationContext) -> SendResult:
        number = self.phone_number_id(ctx)
        graph = self.graph(ctx)
        # Check the content before uploading anything: a message WhatsApp would refuse fails
        # here, without leaving orphan uploads behind.
        pending = {i: _PENDING_UPLOAD for i, a in enumerate(message.attachments) if needs_upload(a)}
        build_bodies(message, pending)
        uploads: dict[int, str] = {}
        for index in pending:
            attachment = message.attachments[index]
            uploads[index] = await self.upload_media(
                str(attachment["media_id"]),
                ctx,
                mime_type=attachment.get("mime_type"),
                file_name=attachment.get("file_name"),
            )
        ids: list[str] = []
        wa_id: str | None = None
        # A failure after the first body leaves the earlier ones sent; a retry sends them again
        # (Graph has no idempotency key), which is why long texts are split only at the end.
        for body in build_bodies(message, uploads):
            answer = await graph.call(
                "POST",
                number,
                "messages",
                json_body=body,
                recipient=message.recipient,
                phone_number_id=number,
            )
            messages = answer.get("messages")
            first = messages[0] if isinstance(messages, list) and messages else None
            if not isinstance(first, dict) or not first.get("id"):
                raise PermanentProviderError("the Graph API accepted the message but returned no message id")
            ids.append(str(first["id"]))
            contacts = answer.get("contacts")
            if wa_id is None and isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
                wa_id = contacts[0].get("wa_id")
        detail: dict[str, Any] = {"provider_message_ids": ids} if len(ids) > 1 else {}
        if wa_id and wa_id != message.recipient:
            detail["wa_id"] = wa_id  # WhatsApp's canonical id for the recipient's number
        return SendResult(ids[0], detail)

    async def upload_media(
        self,
        media_id: str,
        ctx: IntegrationContext,
        *,
        mime_type: str | None = None,
        file_name: str | None = None,
    ) -> str:
        """Load one of the tenant's uploads and post it to `/{phone_number_id}/media`: its WhatsApp id."""
        if ctx.load_media is None:
            raise PermanentProviderError("uploaded files cannot be sent from this context")
        try:
            media = await ctx.load_media(media_id)
        except NotFound as exc:
            raise ContentRejected(f"the uploaded file {media_id} no longer exists") from exc
        mime = str(mime_type or media.mime_type or "application/octet-stream")
        name = str(file_name or media.file_name or "file")
        number = self.phone_number_id(ctx)
        answer = await self.graph(ctx).call(
            "POST",
            number,
            "media",
            form={"messaging_product": "whatsapp", "type": mime},
            files=(FilePart("file", media.content, name, mime),),
        )
        if not answer.get("id"):
            raise PermanentProviderError("the Graph API accepted the upload but returned no media id")
        return str(answer["id"])

    async def mark_read(
        self, provider_message_id: str, ctx: IntegrationContext, *, typing_indicator: bool = False
    ) -> None:
        """Mark a received message (and the ones before it) as read: blue ticks for the customer."""
        number = self.phone_number_id(ctx)
        await self.graph(ctx).call(
            "POST",
            number,
            "messages",
            json_body=read_receipt_body(provider_message_id, typing_indicator=typing_indicator),
        )

    # Capabilities

    async def fetch_media(
        self, provider_file_id: str, ctx: IntegrationContext, *, max_bytes: int
    ) -> FetchedMedia:
        graph = self.graph(ctx)
        info = await graph.raw("GET", graph.url(provider_file_id))
        if not 200 <= info.status < 300:
            if is_not_found(info.status, parse_error(info.body)):
                raise NotFound(
                    "WhatsApp has no media with this id (media ids of received files expire after 30 days)"
                )
            raise graph_error(info.status, info.body, info.headers)
        answer = _json_object(info.body, "a media lookup")
        size = _int(answer.get("file_size"))
        if size is not None and size > max_bytes:
            raise PayloadTooLarge(f"the file is {size} bytes, over the {max_bytes}-byte limit")
        url = answer.get("url")
        if not isinstance(url, str) or not url:
            raise NotFound("WhatsApp returned no download URL for this media")
        download = await graph.raw("GET", url, max_bytes=max_bytes)  # ProviderHttp enforces the cap
        if download.status == 404:
            raise NotFound("WhatsApp no longer serves this media")
        if not 200 <= download.status < 300:
            raise graph_error(download.status, download.body, download.headers)
        mime = answer.get("mime_type") or download.headers.get("content-type")
        return FetchedMedia(download.body, str(mime) if mime else None, None)

    async def validate_number(self, ctx: IntegrationContext) -> dict[str, Any]:
        """Connect-time check that the token can use the configured number: its display number,
        verified name and quality rating. AuthRevoked for a bad token, NotFound for an unknown id."""
        number = self.phone_number_id(ctx)
        graph = self.graph(ctx)
        result = await graph.raw("GET", graph.url(number, query={"fields": ",".join(NUMBER_FIELDS)}))
        if 200 <= result.status < 300:
            answer = _json_object(result.body, "a phone number lookup")
            return {key: answer[key] for key in ("id", *NUMBER_FIELDS) if key in answer}
        mapped = graph_error(result.status, result.body, result.headers)
        if isinstance(mapped, AuthRevoked):
            raise AuthRevoked(
                f"WhatsApp refused the access token while checking phone number id {number}: {mapped.message}. "
                "Use a valid system-user token with the whatsapp_business_messaging permission.",
                details=mapped.details,
            )
        if is_not_found(result.status, parse_error(result.body)):
            raise NotFound(
                f"WhatsApp has no phone number with id {number} that this access token can see; phone_number_id "
                "is Meta's id of the number (WhatsApp Manager → API Setup), not the phone number itself",
                details=mapped.details,
            )
        raise mapped
