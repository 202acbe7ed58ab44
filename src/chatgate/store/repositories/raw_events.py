"""Raw provider events and media of one tenant."""

from __future__ import annotations

from chatgate.store.models import Media, RawEvent
from chatgate.store.pagination import Page
from chatgate.store.repositories.base import TenantScoped


class RawEventRepository(TenantScoped):
    async def get(self, raw_id: str) -> RawEvent:
        return await self._get(RawEvent, raw_id, "raw event")

    async def list(
        self, *, cursor: str | None, limit: int, status: str | None, integration_id: str | None
    ) -> Page[RawEvent]:
        query = self._select(RawEvent)
        if status:
            query = query.where(RawEvent.status == status)
        if integration_id:
            query = query.where(RawEvent.integration_id == integration_id)
        return await self._page(query, RawEvent, cursor, limit)


class MediaRepository(TenantScoped):
    async def get(self, media_id: str) -> Media:
        return await self._get(Media, media_id, "media")
