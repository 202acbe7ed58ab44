"""Adapter contexts for sends, with the integrations' decrypted credentials cached.

Decrypting an integration's credentials per send would cost a data-key unwrap and an AES
open each time. The cache is keyed by the sealed text itself, which the send worker reads
with every batch: new credentials or a key rotation change it, so a stale entry is never
used, and no time-to-live is needed. Status and config also come fresh with every batch.
"""

from __future__ import annotations

from collections import OrderedDict

from chatgate.domain.integrations import IntegrationKind
from chatgate.providers.base import IntegrationContext, IntegrationRef
from chatgate.services.integrations import IntegrationService
from chatgate.services.provider_context import ProviderContexts
from chatgate.services.send_store import IntegrationRow
from chatgate.store.models import Integration


class SendContexts:
    def __init__(
        self, integrations: IntegrationService, contexts: ProviderContexts, *, max_entries: int = 10_000
    ) -> None:
        self.integrations = integrations
        self.contexts = contexts
        self.max_entries = max_entries
        self._credentials: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()

    async def credentials(self, row: IntegrationRow) -> dict[str, str]:
        if row.credentials_sealed is None:
            return {}
        key = (row.id, row.credentials_sealed)
        cached = self._credentials.get(key)
        if cached is not None:
            self._credentials.move_to_end(key)
            return cached
        sealed = Integration(id=row.id, tenant_id=row.tenant_id, credentials_sealed=row.credentials_sealed)
        values = await self.integrations.credentials(sealed)
        self._credentials[key] = values
        while len(self._credentials) > self.max_entries:
            self._credentials.popitem(last=False)
        return values

    async def build(self, row: IntegrationRow) -> IntegrationContext:
        ref = IntegrationRef(row.id, row.tenant_id, IntegrationKind(row.kind), row.public_id, row.config)
        return self.contexts.build(ref, await self.credentials(row))
