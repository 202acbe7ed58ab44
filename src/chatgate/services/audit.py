"""Recording and reading the audit log."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from chatgate.domain.clock import Clock
from chatgate.store.db import Database
from chatgate.store.models import AuditEntry
from chatgate.store.pagination import Page
from chatgate.store.repositories.audit import AuditRepository, AuditWriter

log = logging.getLogger(__name__)


@dataclass
class AuditRecord:
    tenant_id: str | None
    actor_type: str
    actor_id: str | None
    action: str
    method: str
    path: str
    status_code: int
    client_ip: str | None
    request_id: str | None
    target_type: str | None = None
    target_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        if self.status_code < 400:
            return "success"
        if self.status_code in (401, 403):
            return "denied"
        return "failure"


class AuditService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def record(self, record: AuditRecord) -> None:
        entry = AuditEntry(
            tenant_id=record.tenant_id,
            actor_type=record.actor_type,
            actor_id=record.actor_id,
            action=record.action,
            target_type=record.target_type,
            target_id=record.target_id,
            method=record.method,
            path=record.path[:500],
            status_code=record.status_code,
            outcome=record.outcome,
            client_ip=record.client_ip,
            request_id=record.request_id,
            details=record.details,
            created_at=self.clock(),
        )
        try:
            async with self.db.transaction() as session:
                await AuditWriter(session).append(entry)
        except SQLAlchemyError:
            # The action already happened; losing its audit line must be loud, not fatal.
            log.exception("could not write the audit entry for %s %s", record.method, record.action)

    async def list(
        self,
        tenant_id: str,
        *,
        cursor: str | None,
        limit: int,
        action: str | None,
        actor_id: str | None,
        since: datetime | None,
    ) -> Page[AuditEntry]:
        async with self.db.sessions() as session:
            return await AuditRepository(session, tenant_id).list(
                cursor=cursor, limit=limit, action=action, actor_id=actor_id, since=since
            )
