"""Media: uploads to send, and provider files to fetch on demand."""

from __future__ import annotations

import hashlib

from chatgate.domain.clock import Clock
from chatgate.domain.errors import InvalidInput
from chatgate.domain.ids import new_id
from chatgate.store.db import Database
from chatgate.store.models import Media
from chatgate.store.repositories.raw_events import MediaRepository


class MediaService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def upload(
        self, tenant_id: str, *, content: bytes, mime_type: str | None, file_name: str | None
    ) -> Media:
        if not content:
            raise InvalidInput("the uploaded file is empty")
        media = Media(
            id=new_id("med"),
            tenant_id=tenant_id,
            mime_type=mime_type or "application/octet-stream",
            file_name=file_name,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            content=content,
            created_at=self.clock(),
        )
        async with self.db.transaction() as session:
            session.add(media)
        return media

    async def get(self, tenant_id: str, media_id: str) -> Media:
        async with self.db.sessions() as session:
            return await MediaRepository(session, tenant_id).get(media_id)
