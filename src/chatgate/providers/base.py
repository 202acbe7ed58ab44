"""The provider adapter protocol and what adapters receive and return.

Adapters are stateless and read no global settings: everything arrives through the
context (credentials, config, the HTTP client, the clock). Errors are the typed provider
errors of `domain.errors`; workers decide retries by type alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, runtime_checkable

from chatgate.delivery.http import SafeHttpClient
from chatgate.domain.clock import Clock
from chatgate.domain.inbound import ProviderEvent
from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.http import ProviderHttp
from chatgate.ratelimit.base import Limit

NO_QUERY: Mapping[str, str] = MappingProxyType({})


class InboundRequest(NamedTuple):
    """A provider's HTTP request exactly as received (headers lower-cased). A tuple: made for
    every inbound webhook, where a frozen dataclass's construction cost twice as much."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = NO_QUERY


@dataclass(frozen=True)
class IntegrationRef:
    id: str
    tenant_id: str
    kind: IntegrationKind
    public_id: str
    config: Mapping[str, Any]


@dataclass(frozen=True)
class FetchedMedia:
    content: bytes
    mime_type: str | None = None
    file_name: str | None = None


# Loads one of the tenant's uploads (POST /v1/media) by id, for sends that attach it.
MediaLoader = Callable[[str], Awaitable[FetchedMedia]]


@dataclass(frozen=True)
class IntegrationContext:
    integration: IntegrationRef
    credentials: Mapping[str, str]
    http: SafeHttpClient  # tenant-supplied URLs (SSRF-checked)
    clock: Clock
    public_base_url: str | None = None
    api: ProviderHttp | None = None  # the provider's own API (operator-configured base URL)
    load_media: MediaLoader | None = None

    def provider_api(self) -> ProviderHttp:
        if self.api is None:
            raise RuntimeError("this context was built without a provider API client")
        return self.api


@dataclass(frozen=True)
class OutboundMessage:
    message_id: str
    recipient: str  # the conversation's external id (chat id, phone number, URL-side id)
    text: str | None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    reply_to_provider_id: str | None = None
    buttons: list[Any] = field(default_factory=list)  # rows of {text, callback_data | url}
    template: dict[str, Any] | None = None  # provider template (WhatsApp, Twilio Content)
    options: dict[str, Any] = field(default_factory=dict)  # provider-specific: parse_mode, list…


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Bucket:
    """A rate-limit budget a send spends from (per bot, chat, group, number…)."""

    key: str
    limit: Limit


class ProviderAdapter(Protocol):
    kind: IntegrationKind

    def verify_inbound(self, request: InboundRequest, ctx: IntegrationContext) -> None:
        """Raise Unauthenticated unless the request provably comes from the provider."""

    def event_id(self, request: InboundRequest) -> str:
        """The provider's unique id for this delivery (dedupe key); InvalidInput if absent."""

    def parse_inbound(self, body: bytes, headers: Mapping[str, str]) -> list[ProviderEvent]:
        """Pure: raw bytes to provider-neutral events. ValueError/InvalidInput when unparseable."""

    def send_buckets(self, message: OutboundMessage, ctx: IntegrationContext) -> list[Bucket]:
        """Which rate-limit budgets this send spends from."""

    async def send(self, message: OutboundMessage, ctx: IntegrationContext) -> SendResult:
        """Deliver one message; raise Transient/Permanent provider errors."""


@runtime_checkable
class MediaFetcher(Protocol):
    """Adapters whose inbound attachments are fetched from the provider on demand."""

    async def fetch_media(
        self, provider_file_id: str, ctx: IntegrationContext, *, max_bytes: int
    ) -> FetchedMedia:
        """The file's bytes; PayloadTooLarge past max_bytes, NotFound when the provider lost it."""


@runtime_checkable
class MessageActions(Protocol):
    """Adapters that can act on messages already sent (edit, delete) and on chats."""

    async def edit(
        self,
        recipient: str,
        provider_message_id: str,
        text: str | None,
        buttons: list[Any],
        ctx: IntegrationContext,
    ) -> None: ...

    async def delete(self, recipient: str, provider_message_id: str, ctx: IntegrationContext) -> None: ...

    async def chat_action(self, recipient: str, action: str, ctx: IntegrationContext) -> None: ...

    async def answer_button(
        self, callback_id: str, text: str | None, show_alert: bool, ctx: IntegrationContext
    ) -> None: ...
