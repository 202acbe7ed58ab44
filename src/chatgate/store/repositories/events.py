"""The tenant event log: append with per-tenant sequence numbers, read after a sequence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select

from chatgate.domain.events import EVENT_VERSION, EventType
from chatgate.domain.ids import new_id
from chatgate.store.models import Event, TenantSequence
from chatgate.store.prepared import Prepared
from chatgate.store.repositories.base import TenantScoped
from chatgate.store.transient import transient


@dataclass(frozen=True)
class NewEvent:
    type: EventType
    data: dict[str, Any]
    integration_id: str | None = None
    conversation_id: str | None = None
    dedupe_key: str | None = None


def event_rows(tenant_id: str, events: Sequence[NewEvent], first: int, now: datetime) -> list[dict[str, Any]]:
    """The `events` rows for new events numbered from `first`, ready for a bulk insert."""
    return [
        {
            "event_id": new_id("evt"),
            "tenant_id": tenant_id,
            "sequence": first + i,
            "type": e.type.value,
            "version": EVENT_VERSION,
            "integration_id": e.integration_id,
            "conversation_id": e.conversation_id,
            "dedupe_key": e.dedupe_key,
            "data": e.data,
            "created_at": now,
        }
        for i, e in enumerate(events)
    ]


_EVENTS = cast(Table, Event.__table__)
_SEQUENCES = cast(Table, TenantSequence.__table__)
# The statements of every append, built once (building them cost more than running them).
_LOCK = (
    _SEQUENCES.update()
    .where(_SEQUENCES.c.tenant_id == bindparam("b_tenant"))
    .values(last_sequence=_SEQUENCES.c.last_sequence)
)
_RESERVE = Prepared(
    _SEQUENCES.update()
    .where(_SEQUENCES.c.tenant_id == bindparam("b_tenant"))
    .values(last_sequence=_SEQUENCES.c.last_sequence + bindparam("b_count"))
)
_LAST_SEQUENCE = Prepared(
    select(_SEQUENCES.c.last_sequence).where(_SEQUENCES.c.tenant_id == bindparam("b_tenant"))
)
_SEEN = Prepared(
    select(_EVENTS.c.dedupe_key).where(_EVENTS.c.dedupe_key.in_(bindparam("b_keys", expanding=True)))
)
_INSERT = Prepared(_EVENTS.insert())
_ROW_IDS = Prepared(
    select(_EVENTS.c.sequence, _EVENTS.c.id).where(
        _EVENTS.c.tenant_id == bindparam("b_tenant"),
        _EVENTS.c.sequence >= bindparam("b_first"),
        _EVENTS.c.sequence <= bindparam("b_last"),
    )
)


class EventLog(TenantScoped):
    async def lock(self) -> None:
        """Take the tenant's sequence row lock now. Every transaction that appends events and
        also changes integrations takes this lock first, so no two lock in opposite order
        (a deadlock PostgreSQL detected under load in the scaled test). SQLite needs none: its
        one write transaction at a time (and the process's write gate) already orders them."""
        if self.session.get_bind().dialect.name == "sqlite":
            return
        await self.session.execute(_LOCK, {"b_tenant": self.tenant_id})

    async def append(self, events: list[NewEvent], now: datetime) -> list[Event]:
        """Number and store events. The sequence row stays locked until commit, so events of
        one tenant become visible in sequence order and a reader after N never skips one."""
        if not events:
            return []
        fresh = await self._without_seen(events)
        if not fresh:
            return []
        first = await self.reserve(len(fresh))
        if first is None:  # a tenant created before its counter existed
            self.session.add(TenantSequence(tenant_id=self.tenant_id, last_sequence=len(fresh)))
            await self.session.flush()
            first = 1
        return await self._insert(fresh, first, now)

    async def append_new(self, events: Sequence[NewEvent], now: datetime) -> list[Event] | None:
        """`append` for events known to be new (their cause happened in this transaction, so no
        dedupe key can exist yet; the unique index would refuse one that did). None when the
        tenant has no counter row yet: the caller then uses `append`."""
        if not events:
            return []
        first = await self.reserve(len(events))
        if first is None:
            return None
        return await self._insert(events, first, now)

    async def _insert(self, events: Sequence[NewEvent], first: int, now: datetime) -> list[Event]:
        rows = event_rows(self.tenant_id, events, first, now)
        await _INSERT.run_many(self.session, rows)
        # Only the row ids come back from the database (the hooks need them); the rest is what
        # was just written: reading whole rows back cost ~100 µs per event (JSON and ORM loading).
        last = first + len(events) - 1
        found = await _ROW_IDS.rows(
            self.session, {"b_tenant": self.tenant_id, "b_first": first, "b_last": last}
        )
        ids: dict[int, int] = {int(sequence): int(row_id) for sequence, row_id in found}
        return [transient(Event, {**row, "id": ids[row["sequence"]]}) for row in rows]

    async def reserve(self, count: int) -> int | None:
        """Advance the tenant's counter by `count` (its row stays locked until commit); the
        first of the new numbers, or None when the tenant has no counter row yet."""
        await _RESERVE.run(self.session, {"b_tenant": self.tenant_id, "b_count": count})
        found = await _LAST_SEQUENCE.rows(self.session, {"b_tenant": self.tenant_id})
        return int(found[0][0]) - count + 1 if found else None

    async def _without_seen(self, events: list[NewEvent]) -> list[NewEvent]:
        keys = [e.dedupe_key for e in events if e.dedupe_key]
        seen: set[str] = set()
        if keys:
            seen = {k for (k,) in await _SEEN.rows(self.session, {"b_keys": keys}) if k}
        fresh: list[NewEvent] = []
        for event in events:
            if event.dedupe_key and event.dedupe_key in seen:
                continue
            if event.dedupe_key:
                seen.add(event.dedupe_key)
            fresh.append(event)
        return fresh

    async def after(
        self,
        sequence: int,
        *,
        limit: int,
        types: list[str] | None = None,
        integration_id: str | None = None,
    ) -> list[Event]:
        query = self._select(Event).where(Event.sequence > sequence)
        if types:
            query = query.where(Event.type.in_(types))
        if integration_id:
            query = query.where(Event.integration_id == integration_id)
        return list((await self.session.execute(query.order_by(Event.sequence).limit(limit))).scalars())

    async def last_sequence(self) -> int:
        query = select(TenantSequence.last_sequence).where(TenantSequence.tenant_id == self.tenant_id)
        return int((await self.session.execute(query)).scalar_one_or_none() or 0)
