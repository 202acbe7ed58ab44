"""Builds the context an adapter works in: credentials, HTTP clients, uploads, public URL."""

from __future__ import annotations

from chatgate.delivery.http import SafeHttpClient
from chatgate.domain.clock import Clock
from chatgate.domain.errors import InvalidInput
from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.base import FetchedMedia, IntegrationContext, IntegrationRef, MediaLoader
from chatgate.providers.http import ProviderHttp
from chatgate.services.integrations import IntegrationService
from chatgate.services.media import MediaService
from chatgate.store.models import Integration


def ref_of(integration: Integration) -> IntegrationRef:
    return IntegrationRef(
        integration.id,
        integration.tenant_id,
        IntegrationKind(integration.kind),
        integration.public_id,
        dict(integration.config),
    )


class ProviderContexts:
    def __init__(
        self,
        integrations: IntegrationService,
        media: MediaService,
        tenant_http: SafeHttpClient,
        provider_http: ProviderHttp,
        clock: Clock,
        public_base_url: str | None,
    ) -> None:
        self.integrations = integrations
        self.media = media
        self.tenant_http = tenant_http
        self.provider_http = provider_http
        self.clock = clock
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def build(self, ref: IntegrationRef, credentials: dict[str, str]) -> IntegrationContext:
        return IntegrationContext(
            ref,
            credentials,
            self.tenant_http,
            self.clock,
            public_base_url=self.public_base_url,
            api=self.provider_http,
            load_media=self._loader(ref.tenant_id),
        )

    async def for_integration(self, integration: Integration) -> IntegrationContext:
        return self.build(ref_of(integration), await self.integrations.credentials(integration))

    def _loader(self, tenant_id: str) -> MediaLoader:
        async def load(media_id: str) -> FetchedMedia:
            media = await self.media.get(tenant_id, media_id)
            if media.content is None:
                raise InvalidInput(f"media '{media_id}' holds no uploaded bytes to send")
            return FetchedMedia(media.content, media.mime_type, media.file_name)

        return load
