"""A short-lived cache of integrations with their decrypted credentials.

The inbound path authenticates every provider request with the integration's secret; reading
and decrypting it per request would cost a query and a decryption each time. Entries live a
few seconds, so a changed secret or status takes effect quickly on every process.

Under load an entry expires while many requests for it are in flight: they wait for one lookup
(one query, one decryption) instead of each making its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chatgate.domain.integrations import IntegrationKind, IntegrationStatus
from chatgate.providers.base import IntegrationRef
from chatgate.services.integrations import IntegrationService
from chatgate.store.db import Database
from chatgate.store.repositories.integrations import IntegrationRouting


@dataclass(frozen=True)
class CachedIntegration:
    ref: IntegrationRef
    status: IntegrationStatus
    credentials: dict[str, str]


class IntegrationCache:
    def __init__(
        self,
        db: Database,
        integrations: IntegrationService,
        *,
        ttl: float = 5.0,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.integrations = integrations
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, CachedIntegration]] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Task[CachedIntegration]] = {}

    def fresh(self, kind: str, public_id: str) -> CachedIntegration | None:
        """The cached entry while it is fresh, without a coroutine (the inbound hot path)."""
        hit = self._entries.get((kind, public_id))
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        return None

    async def by_public_id(self, kind: str, public_id: str) -> CachedIntegration:
        cached = self.fresh(kind, public_id)
        if cached is not None:
            return cached
        key = (kind, public_id)
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(key))
            loading.add_done_callback(lambda done: self._loaded(key, done))
        # Shielded: a waiter that gives up (its client went away) does not cancel the others' lookup.
        return await asyncio.shield(loading)

    def _loaded(self, key: tuple[str, str], task: asyncio.Task[CachedIntegration]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure is its waiters' to raise, or nobody's

    async def _load(self, key: tuple[str, str]) -> CachedIntegration:
        kind, public_id = key
        now = self.clock()
        async with self.db.sessions() as session:
            row = await IntegrationRouting(session).by_public_id(kind, public_id)
        entry = CachedIntegration(
            ref=IntegrationRef(
                row.id, row.tenant_id, IntegrationKind(row.kind), row.public_id, dict(row.config)
            ),
            status=IntegrationStatus(row.status),
            credentials=await self.integrations.credentials(row),
        )
        self._entries[key] = (now + self.ttl, entry)
        self._entries.move_to_end(key)
        # Entries are in insertion order with one TTL, so the expired ones are at the front:
        # drop them, so thousands of quiet integrations cost no memory between their requests.
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest[0] > now and len(self._entries) <= self.max_entries:
                break
            self._entries.popitem(last=False)
        return entry
