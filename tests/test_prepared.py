"""`Prepared` statements give what `session.execute` gives, on every database.

On the inline SQLite engine they run on sqlite3's cursor with their own parameter and row
conversions (store/prepared.py); elsewhere they are `session.execute`. So every test here runs
on all three databases, and compares with SQLAlchemy's own execution or with ORM reads.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, event, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.domain.ids import new_id
from chatgate.store.models import Contact, Event, Integration, Job, TenantSequence
from chatgate.store.prepared import Prepared, UnpreparableStatement
from chatgate.store.repositories.jobs import job_row
from chatgate.store.sqlite_inline import UngatedSqliteWrite
from tests.conftest import Api
from tests.webhook_helpers import webhook_integration

_EVENTS = cast(Table, Event.__table__)
_JOBS = cast(Table, Job.__table__)
_CONTACTS = cast(Table, Contact.__table__)
_INTEGRATIONS = cast(Table, Integration.__table__)

INSERT_EVENTS = Prepared(_EVENTS.insert())
EVENTS_OF = Prepared(
    select(_EVENTS.c.sequence, _EVENTS.c.data, _EVENTS.c.created_at, _EVENTS.c.conversation_id)
    .where(
        _EVENTS.c.tenant_id == bindparam("b_tenant"),
        _EVENTS.c.sequence.in_(bindparam("b_seq", expanding=True)),
    )
    .order_by(_EVENTS.c.sequence)
)
# A literal IN list and literal values in the statement, beside the caller's parameters.
RUNNING_OR_PENDING = Prepared(
    select(_JOBS.c.id, _JOBS.c.attempts)
    .where(_JOBS.c.id.in_(bindparam("b_ids", expanding=True)), _JOBS.c.status.in_(("pending", "running")))
    .order_by(_JOBS.c.id)
)
START = Prepared(
    _JOBS.update()
    .where(_JOBS.c.id.in_(bindparam("b_ids", expanding=True)), _JOBS.c.status == "pending")
    .values(status="running", attempts=_JOBS.c.attempts + 1, lease_until=bindparam("b_until"))
)
INSERT_CONTACTS = Prepared(_CONTACTS.insert())
COUNT = Prepared(
    _INTEGRATIONS.update()
    .where(_INTEGRATIONS.c.id == bindparam("b_id"))
    .values(messages_received=_INTEGRATIONS.c.messages_received + bindparam("b_n"))
)


def event_row(tenant_id: str, sequence: int, now: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": new_id("evt"),
        "tenant_id": tenant_id,
        "sequence": sequence,
        "type": "message.received",
        "version": 1,
        "integration_id": None,
        "conversation_id": extra.get("conversation_id"),
        "dedupe_key": None,
        "data": extra.get("data", {"text": f"hello {sequence}", "nested": {"n": [sequence, None]}}),
        "created_at": now,
    }


async def test_rows_are_what_sqlalchemy_reads(api: Api) -> None:
    tenant = await api.tenant()
    now = datetime(2026, 11, 21, 12, 30, 5, 123456, tzinfo=UTC)
    rows = [
        event_row(tenant.id, n, now + timedelta(seconds=n), conversation_id="cnv_x" if n % 2 else None)
        for n in range(1, 8)
    ]
    async with api.container.db.transaction() as session:
        await INSERT_EVENTS.run_many(session, rows)
    for wanted in ([3], [1, 2, 5], [7, 6, 4, 1]):
        params = {"b_tenant": tenant.id, "b_seq": wanted}
        async with api.container.db.sessions() as session:
            prepared = await EVENTS_OF.rows(session, params)
            expected = [tuple(row) for row in await session.execute(EVENTS_OF.statement, params)]
        assert prepared == expected
        assert [row[0] for row in prepared] == sorted(wanted)
        sequence, data, created_at, conversation_id = prepared[0]
        assert data == {"text": f"hello {sequence}", "nested": {"n": [sequence, None]}}
        assert created_at == now + timedelta(seconds=sequence)
        assert created_at.tzinfo is not None
        assert conversation_id == ("cnv_x" if sequence % 2 else None)


async def test_an_empty_in_list_matches_nothing_and_an_empty_not_in_list_everything(api: Api) -> None:
    tenant = await api.tenant()
    now = datetime.now(UTC)
    not_in = Prepared(
        select(_EVENTS.c.sequence)
        .where(
            _EVENTS.c.tenant_id == bindparam("b_tenant"),
            _EVENTS.c.sequence.not_in(bindparam("b_seq", expanding=True)),
        )
        .order_by(_EVENTS.c.sequence)
    )
    async with api.container.db.transaction() as session:
        await INSERT_EVENTS.run_many(session, [event_row(tenant.id, n, now) for n in (1, 2)])
        assert await EVENTS_OF.rows(session, {"b_tenant": tenant.id, "b_seq": []}) == []
        assert await START.run(session, {"b_ids": [], "b_until": now}) == 0
        assert await not_in.rows(session, {"b_tenant": tenant.id, "b_seq": []}) == [(1,), (2,)]
        assert await not_in.rows(session, {"b_tenant": tenant.id, "b_seq": [2]}) == [(1,)]


async def test_updates_count_the_rows_they_matched_and_literals_are_bound(api: Api) -> None:
    tenant = await api.tenant()
    now = datetime.now(UTC)
    jobs = [job_row("inbound", tenant.id, new_id("raw"), now) for _ in range(4)]
    ids = sorted(str(job["id"]) for job in jobs)
    async with api.container.db.transaction() as session:
        await Prepared(_JOBS.insert()).run_many(session, jobs)
    until = now + timedelta(minutes=1)
    async with api.container.db.transaction() as session:
        assert await START.run(session, {"b_ids": ids[:3], "b_until": until}) == 3
        assert await START.run(session, {"b_ids": ids, "b_until": until}) == 1  # only the pending one
        assert await RUNNING_OR_PENDING.rows(session, {"b_ids": ids}) == [(job_id, 1) for job_id in ids]
    async with api.container.db.sessions() as session:
        stored = (await session.execute(select(Job).where(Job.id.in_(ids)))).scalars().all()
    assert {job.status for job in stored} == {"running"}
    assert {job.lease_until for job in stored} == {until}


async def test_python_defaults_fill_what_an_insert_leaves_out(api: Api) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    before = datetime.now(UTC)
    contact_id = new_id("ctc")
    async with api.container.db.transaction() as session:
        # unreachable (default False), created_at and updated_at (default utcnow) left out
        await INSERT_CONTACTS.run_many(
            session,
            [
                {
                    "id": contact_id,
                    "tenant_id": tenant.id,
                    "integration_id": integration["id"],
                    "address": "u-1",
                    "display_name": "Ann",
                    "username": None,
                    "phone": None,
                }
            ],
        )
    async with api.container.db.sessions() as session:
        contact = await session.get(Contact, contact_id)
    assert contact is not None
    assert contact.unreachable is False
    assert contact.created_at >= before.replace(microsecond=0)
    assert contact.display_name == "Ann"


async def test_an_update_sets_onupdate_columns(api: Api) -> None:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    async with api.container.db.sessions() as session:
        stored = await session.get(Integration, integration["id"])
        assert stored is not None
        updated_before, received_before = stored.updated_at, stored.messages_received
    async with api.container.db.transaction() as session:
        assert await COUNT.run(session, {"b_id": integration["id"], "b_n": 3}) == 1
    async with api.container.db.sessions() as session:
        stored = await session.get(Integration, integration["id"])
        assert stored is not None
    assert stored.messages_received == received_before + 3
    assert stored.updated_at > updated_before


async def write_then_fail(session: AsyncSession, row: dict[str, Any]) -> None:
    async with session.begin():
        await INSERT_EVENTS.run_many(session, [row])
        assert (
            len(await EVENTS_OF.rows(session, {"b_tenant": row["tenant_id"], "b_seq": [row["sequence"]]}))
            == 1
        )
        raise RuntimeError("undo")


def write_turn(api: Api) -> AbstractAsyncContextManager[None]:
    """The process's SQLite write gate (Database.transaction() takes it; these tests manage
    their sessions' transactions themselves)."""
    gate = api.container.db.write_gate
    return gate.held_async() if gate is not None else nullcontext()


async def test_a_rolled_back_transaction_takes_prepared_writes_with_it(api: Api) -> None:
    tenant = await api.tenant()
    async with write_turn(api), api.container.db.sessions() as session:
        with pytest.raises(RuntimeError, match="undo"):
            await write_then_fail(session, event_row(tenant.id, 1, datetime.now(UTC)))
    async with api.container.db.sessions() as session:
        assert await EVENTS_OF.rows(session, {"b_tenant": tenant.id, "b_seq": [1]}) == []


async def test_one_session_through_two_transactions(api: Api) -> None:
    """The connection kept for one transaction serves that one only: the next one commits or
    rolls back on its own."""
    tenant = await api.tenant()
    now = datetime.now(UTC)
    async with write_turn(api), api.container.db.sessions() as session:
        async with session.begin():
            await INSERT_EVENTS.run_many(session, [event_row(tenant.id, 1, now)])
        with pytest.raises(RuntimeError, match="undo"):
            await write_then_fail(session, event_row(tenant.id, 2, now))
        async with session.begin():
            await INSERT_EVENTS.run_many(session, [event_row(tenant.id, 3, now)])
    async with api.container.db.sessions() as session:
        found = await EVENTS_OF.rows(session, {"b_tenant": tenant.id, "b_seq": [1, 2, 3]})
    assert [row[0] for row in found] == [1, 3]


async def test_cursor_listeners_see_prepared_statements(api: Api) -> None:
    tenant = await api.tenant()
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if "tenant_sequences" in statement:
            seen.append((statement, parameters))

    engine = api.container.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        async with api.container.db.sessions() as session:
            query = Prepared(
                select(TenantSequence.last_sequence).where(TenantSequence.tenant_id == bindparam("b_t"))
            )
            await query.rows(session, {"b_t": tenant.id})
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(seen) == 1
    assert tenant.id in tuple(seen[0][1])


async def test_a_prepared_write_outside_the_write_gate_is_refused(sqlite_api: Api) -> None:
    """On the inline engine a write must hold the gate, as SQLAlchemy's writes must."""
    tenant = await sqlite_api.tenant()
    async with sqlite_api.container.db.sessions() as session:
        with pytest.raises(UngatedSqliteWrite):
            await INSERT_EVENTS.run_many(session, [event_row(tenant.id, 1, datetime.now(UTC))])


async def test_a_default_that_needs_the_execution_context_is_refused(sqlite_api: Api) -> None:
    table = Table(
        "prepared_probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("label", String(20), default=lambda context: f"from {context}"),
    )
    async with sqlite_api.container.db.transaction() as session:
        with pytest.raises(UnpreparableStatement, match="label"):
            await Prepared(table.insert()).run_many(session, [{"id": 1}])


async def test_a_missing_value_is_named(sqlite_api: Api) -> None:
    async with sqlite_api.container.db.transaction() as session:
        with pytest.raises(KeyError, match="b_n"):
            await COUNT.run(session, {"b_id": "int_x"})  # b_n left out


async def two_stored_contacts(api: Api) -> list[dict[str, Any]]:
    """Two contacts of a new tenant's integration, stored; their rows."""
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "id": new_id("ctc"),
            "tenant_id": tenant.id,
            "integration_id": integration["id"],
            "address": f"u-{n}",
            "display_name": f"name {n}",
            "username": None,
            "phone": None,
            "unreachable": False,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(2)
    ]
    async with api.container.db.transaction() as session:
        await INSERT_CONTACTS.run_many(session, rows)
    return rows


async def test_rows_made_persistent_are_the_sessions_objects(api: Api) -> None:
    """`persistent` makes Core rows the session's own objects: a change is flushed with the
    session, and a row the session already holds comes back as that very object."""
    from chatgate.store.transient import persistent

    rows = await two_stored_contacts(api)
    ids = [str(row["id"]) for row in rows]
    read = Prepared(
        select(*_CONTACTS.columns)
        .where(_CONTACTS.c.id.in_(bindparam("b_ids", expanding=True)))
        .order_by(_CONTACTS.c.id)
    )
    async with api.container.db.transaction() as session:
        held = await session.get(Contact, ids[0])  # loaded by the ORM first
        found = persistent(session, Contact, await read.rows(session, {"b_ids": ids}))
        assert found[0] is held
        assert found[1] in session
        found[1].display_name = "renamed"
    async with api.container.db.sessions() as session:
        stored = await session.get(Contact, ids[1])
    assert stored is not None
    assert stored.display_name == "renamed"
    assert stored.created_at == rows[1]["created_at"]


async def test_adopting_a_plain_row_gives_the_sessions_own_object(api: Api) -> None:
    """`adopted` attaches a row built by `transient` so a change to it is saved; when the
    session already holds that row, the change goes to the session's object."""
    from chatgate.store.transient import adopted, transient

    rows = await two_stored_contacts(api)
    ids = [str(row["id"]) for row in rows]
    async with api.container.db.transaction() as session:
        held = await session.get(Contact, ids[0])
        first = adopted(session, transient(Contact, dict(rows[0])))
        assert first is held
        second = adopted(session, transient(Contact, dict(rows[1])))
        assert second in session
        first.display_name = "first, renamed"
        second.display_name = "second, renamed"
    async with api.container.db.sessions() as session:
        names = {
            c.id: c.display_name
            for c in (await session.execute(select(Contact).where(Contact.id.in_(ids)))).scalars()
        }
    assert names == {ids[0]: "first, renamed", ids[1]: "second, renamed"}
