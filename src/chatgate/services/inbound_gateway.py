"""The front door for providers: `POST /in/{kind}/{public_id}`.

Resolve the integration, let its adapter authenticate the raw bytes (failing closed), then
store the raw event durably; the 200 is sent only after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast

from chatgate.domain.clock import Clock
from chatgate.domain.errors import ChatgateError, NotFound, Unauthenticated
from chatgate.domain.integrations import IntegrationStatus
from chatgate.observability.metrics import ApiMetrics
from chatgate.providers.base import InboundRequest, IntegrationContext, IntegrationRef, ProviderAdapter
from chatgate.providers.registry import AdapterRegistry
from chatgate.services.ingest import IngestWriter, Then
from chatgate.services.ingest_rows import NewRaw
from chatgate.services.integration_cache import CachedIntegration, IntegrationCache
from chatgate.services.provider_context import ProviderContexts
from chatgate.store.repositories.integrations import IntegrationRouting

log = logging.getLogger(__name__)

# Short names in the URLs we register with providers (`/in/telegram/{public_id}`).
KIND_ALIASES = {"telegram": "telegram_bot", "whatsapp": "whatsapp_cloud"}


@dataclass(frozen=True)
class InboundOutcome:
    status: int
    body: dict[str, object]


# The two answers nearly every request gets, made once (the fast path knows them by identity).
STORED = InboundOutcome(200, {"ok": True, "duplicate": False})
DUPLICATE = InboundOutcome(200, {"ok": True, "duplicate": True})


class _Prepared(NamedTuple):
    adapter: ProviderAdapter
    verify: Callable[[InboundRequest], None]  # the adapter's check, for this integration
    splitter: Callable[[bytes], dict[str, bytes]] | None  # WhatsApp Cloud: one part per number


def _verifier(adapter: ProviderAdapter, context: IntegrationContext) -> Callable[[InboundRequest], None]:
    """The adapter's `inbound_verifier` for this integration where it has one (work done once per
    integration, not per request), else its `verify_inbound`."""
    make = getattr(adapter, "inbound_verifier", None)
    if make is not None:
        return cast(Callable[[InboundRequest], None], make(context))
    return lambda request: adapter.verify_inbound(request, context)


def _row(kind: str, integration: CachedIntegration, prepared: _Prepared, request: InboundRequest) -> NewRaw:
    """The raw event a request carries, as the ingest writer stores it."""
    ref = integration.ref
    return (ref.tenant_id, ref.id, kind, prepared.adapter.event_id(request), request.headers, request.body)


class InboundGateway:
    def __init__(
        self,
        cache: IntegrationCache,
        adapters: AdapterRegistry,
        writer: IngestWriter,
        contexts: ProviderContexts,
        clock: Clock,
        metrics: ApiMetrics,
    ) -> None:
        self.cache = cache
        self.adapters = adapters
        self.writer = writer
        self.contexts = contexts
        self.clock = clock
        self.metrics = metrics
        # What a request needs of each cached integration entry, made once per entry (a new
        # entry, after the cache's TTL or a change, gets it anew).
        self._prepared: dict[str, tuple[CachedIntegration, _Prepared]] = {}

    def _prepare(self, integration: CachedIntegration) -> _Prepared:
        known = self._prepared.get(integration.ref.id)
        if known is not None and known[0] is integration:
            return known[1]
        if integration.status == IntegrationStatus.DISABLED:
            raise NotFound("this integration is disabled")
        adapter = self.adapters.get(integration.ref.kind)
        prepared = _Prepared(
            adapter,
            _verifier(adapter, self.contexts.build(integration.ref, integration.credentials)),
            getattr(adapter, "split_by_phone_number", None),
        )
        if len(self._prepared) >= self.cache.max_entries:
            self._prepared.clear()  # entries of integrations long gone; made again on demand
        self._prepared[integration.ref.id] = (integration, prepared)
        return prepared

    async def _integration(self, kind: str, public_id: str) -> CachedIntegration:
        if not self.adapters.supports(kind):
            raise NotFound(f"no inbound endpoint for '{kind}'")
        return await self.cache.by_public_id(kind, public_id)

    def receive_then(self, kind: str, public_id: str, request: InboundRequest, then: Then) -> bool:
        """`receive`'s usual case as a plain call: an integration fresh in the cache, one event per
        request. Authenticates and submits the event; `then` is called once it is stored, with
        True when new, False for a duplicate, or the error (`IngestWriter.submit_then`). False:
        nothing done, the request needs `receive` (the integration is not in the cache, or the
        body is split by number). Raises what `receive` raises."""
        ready = self._ready(kind, public_id)
        if ready is None:
            return False
        kind, integration, prepared = ready
        self._authenticate(kind, integration, prepared, request)
        self.writer.submit_then(_row(kind, integration, prepared, request), then)
        return True

    def _ready(self, kind: str, public_id: str) -> tuple[str, CachedIntegration, _Prepared] | None:
        """(kind, integration, what its requests need) when the integration is fresh in the cache
        and its requests carry one event each; else None."""
        kind = KIND_ALIASES.get(kind, kind)
        integration = self.cache.fresh(kind, public_id)
        if integration is None:
            return None
        prepared = self._prepare(integration)
        if prepared.splitter is not None:
            return None
        return kind, integration, prepared

    async def receive(self, kind: str, public_id: str, request: InboundRequest) -> InboundOutcome:
        ready = self._ready(kind, public_id)
        if ready is not None:
            return STORED if await self._submit(*ready, request) else DUPLICATE
        kind = KIND_ALIASES.get(kind, kind)
        integration = await self._integration(kind, public_id)
        prepared = self._prepare(integration)
        if prepared.splitter is None:
            return STORED if await self._submit(kind, integration, prepared, request) else DUPLICATE
        self._authenticate(kind, integration, prepared, request)
        return await self._receive_split(kind, integration.ref, prepared.splitter(request.body), request)

    def _authenticate(
        self, kind: str, integration: CachedIntegration, prepared: _Prepared, request: InboundRequest
    ) -> None:
        try:
            prepared.verify(request)
        except Unauthenticated:
            self.metrics.inbound_rejected_total.labels(kind).inc()
            log.warning("inbound request for %s %s failed authentication", kind, integration.ref.id)
            raise

    def _submit(
        self, kind: str, integration: CachedIntegration, prepared: _Prepared, request: InboundRequest
    ) -> asyncio.Future[bool]:
        self._authenticate(kind, integration, prepared, request)
        return self.writer.submit_row(_row(kind, integration, prepared, request))

    async def _receive_split(
        self, kind: str, receiver: IntegrationRef, parts: dict[str, bytes], request: InboundRequest
    ) -> InboundOutcome:
        """One app's webhook may carry several numbers' changes (WhatsApp Cloud): each part is
        stored with the integration of its number, within the tenant that owns the app."""
        adapter = self.adapters.get(kind)
        own = str(receiver.config.get("phone_number_id") or "")
        stored = duplicates = dropped = 0
        for key, body in parts.items():
            target_id = receiver.id
            if key != own and ":" not in key:  # "waba:…" parts concern the account: keep them here
                async with self.cache.db.sessions() as session:
                    found = await IntegrationRouting(session).by_provider_key(kind, key)
                if found is None or found.tenant_id != receiver.tenant_id:
                    log.warning("inbound %s for unknown number %s dropped (via %s)", kind, key, receiver.id)
                    dropped += 1
                    continue
                target_id = found.id
            part = InboundRequest(request.method, request.url, request.headers, body, request.query)
            new = await self.writer.submit(
                tenant_id=receiver.tenant_id,
                integration_id=target_id,
                kind=kind,
                provider_event_id=adapter.event_id(part),
                headers=request.headers,
                body=body,
            )
            stored += int(new)
            duplicates += int(not new)
        return InboundOutcome(
            200,
            {"ok": True, "stored": stored, "duplicate": stored == 0 and duplicates > 0, "dropped": dropped},
        )


__all__ = ["DUPLICATE", "STORED", "ChatgateError", "InboundGateway", "InboundOutcome"]
