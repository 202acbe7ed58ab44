"""Groups and channels an integration belongs to, for one tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chatgate.domain.ids import new_id
from chatgate.store.models import Channel
from chatgate.store.pagination import Page
from chatgate.store.repositories.base import TenantScoped

# Fields a provider report may change; `connected` is the tenant's choice and set separately.
_REPORTED = ("kind", "title", "username", "member_status", "rights", "can_post")


class ChannelRepository(TenantScoped):
    async def get(self, channel_id: str) -> Channel:
        return await self._get(Channel, channel_id, "channel")

    async def by_external_id(self, integration_id: str, external_id: str) -> Channel | None:
        query = self._select(Channel).where(
            Channel.integration_id == integration_id, Channel.external_id == external_id
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def upsert(
        self, integration_id: str, external_id: str, now: datetime, **reported: Any
    ) -> tuple[Channel, bool]:
        """Create or update from what the provider reported; True when anything changed."""
        unknown = set(reported) - set(_REPORTED) - {"connected"}
        if unknown:
            raise ValueError(f"unknown channel fields {sorted(unknown)}")
        channel = await self.by_external_id(integration_id, external_id)
        if channel is None:
            channel = Channel(
                id=new_id("chn"),
                tenant_id=self.tenant_id,
                integration_id=integration_id,
                external_id=external_id,
                kind=reported.get("kind", "group"),
                member_status=reported.get("member_status", "member"),
                rights=reported.get("rights", {}),
                can_post=bool(reported.get("can_post", False)),
                connected=bool(reported.get("connected", False)),
                title=reported.get("title"),
                username=reported.get("username"),
                created_at=now,
                updated_at=now,
            )
            self.session.add(channel)
            await self.session.flush()
            return channel, True
        changed = False
        for key, value in reported.items():
            if value is not None and getattr(channel, key) != value:
                setattr(channel, key, value)
                changed = True
        if changed:
            channel.updated_at = now
            await self.session.flush()
        return channel, changed

    async def list(
        self,
        *,
        cursor: str | None,
        limit: int,
        integration_id: str | None = None,
        connected: bool | None = None,
    ) -> Page[Channel]:
        query = self._select(Channel)
        if integration_id:
            query = query.where(Channel.integration_id == integration_id)
        if connected is not None:
            query = query.where(Channel.connected == connected)
        return await self._page(query, Channel, cursor, limit)
