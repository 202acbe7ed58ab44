"""SQLite query plans of the hot paths: lookups by id must use the key they name.

Without statistics SQLite's planner guesses; two guesses went wrong and cost time in proportion
to the table (found with bench/pipeline_stages.py): claiming jobs by id searched both status
indexes (every due job), and looking messages up by provider id walked the tenant's whole
message index. These tests capture the statements as the code issues them and ask SQLite for
their plan.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chatgate.domain.ids import inbound_job_id
from chatgate.domain.inbound import ChatRef, Party, ReceivedMessage
from chatgate.services.inbound_processor import _load_raws
from chatgate.store.repositories.conversations import ConversationRepository
from chatgate.store.repositories.inbound_lookups import load_lookups
from chatgate.store.repositories.jobs import JobStore
from chatgate.store.repositories.webhooks import WebhookRepository
from tests.conftest import Api
from tests.sql_capture import captured
from tests.webhook_helpers import webhook_integration


async def plan(api: Api, statement: str, parameters: Any) -> str:
    async with api.container.db.engine.connect() as conn:
        rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)).all()
    return " | ".join(str(row[-1]) for row in rows)


async def test_claiming_jobs_by_id_uses_the_primary_key(sqlite_api: Api) -> None:
    with captured(sqlite_api, "UPDATE JOBS") as statements:
        async with sqlite_api.container.db.transaction() as session:
            ids = [f"job_{i}" for i in range(50)]  # a batch's worth: the guess depends on the count
            await JobStore(session).claim_plain(ids, "w", datetime.now(UTC), timedelta(seconds=60))
    assert statements
    found = await plan(sqlite_api, *statements[0])
    assert "sqlite_autoindex_jobs_1 (id=?)" in found, found
    assert "MULTI-INDEX OR" not in found, found


async def test_reading_and_finishing_claimable_jobs_use_the_primary_key(sqlite_api: Api) -> None:
    """The SQLite batch's claim as a read, and its finish (JobStore.claimable_plain)."""
    ids = [f"job_{i}" for i in range(50)]
    with captured(sqlite_api, "SELECT JOBS") as reads, captured(sqlite_api, "UPDATE JOBS") as writes:
        async with sqlite_api.container.db.transaction() as session:
            store = JobStore(session)
            await store.claimable_plain(ids, datetime.now(UTC))
            await store.finish_claimable(ids, "w", datetime.now(UTC))
    assert len(reads) == 1
    assert len(writes) == 1
    for statement in (reads[0], writes[0]):
        found = await plan(sqlite_api, *statement)
        assert "sqlite_autoindex_jobs_1 (id=?)" in found, found
        assert "MULTI-INDEX OR" not in found, found


async def test_message_lookups_by_provider_id_use_the_unique_index(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    events = [
        (
            integration["id"],
            ReceivedMessage(
                provider_message_id=f"m{i}",
                chat=ChatRef("c1", title="Alice"),
                sender=Party("u1", "Alice"),
                text="hi",
                reply_to_provider_id="m0" if i else None,
            ),
        )
        for i in range(50)
    ]
    with captured(sqlite_api, "SELECT MESSAGES") as statements:
        async with sqlite_api.container.db.sessions() as session:
            await load_lookups(session, tenant.id, events)
    assert len(statements) == 1
    found = await plan(sqlite_api, *statements[0])
    assert "(integration_id=? AND direction=? AND provider_message_id=?)" in found, found


async def test_contact_and_conversation_lookups_use_their_unique_keys(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    events = [
        (
            integration["id"],
            ReceivedMessage(
                provider_message_id=f"m{i}", chat=ChatRef(f"c{i}"), sender=Party(f"u{i}"), text="hi"
            ),
        )
        for i in range(50)
    ]
    with captured(sqlite_api, "SELECT") as statements:
        async with sqlite_api.container.db.sessions() as session:
            await load_lookups(session, tenant.id, events)
    plans = {
        stmt.split("FROM", 1)[1].split()[0]: await plan(sqlite_api, stmt, params)
        for stmt, params in statements
    }
    assert "(integration_id=? AND address=?)" in plans["contacts"], plans
    assert "(integration_id=? AND external_id=?)" in plans["conversations"], plans
    assert "tenant_id=?" not in plans["contacts"] + plans["conversations"], plans


async def test_touching_conversations_finds_them_by_primary_key(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    with captured(sqlite_api, "UPDATE CONVERSATIONS") as statements:
        async with sqlite_api.container.db.transaction() as session:
            ids = [f"cnv_{i}" for i in range(50)]
            await ConversationRepository(session, tenant.id).touch_conversations(ids, datetime.now(UTC))
    assert len(statements) == 1
    found = await plan(sqlite_api, *statements[0])
    assert "sqlite_autoindex_conversations_1 (id=?)" in found, found


async def test_a_processing_batch_loads_its_raw_events_by_primary_key(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    with captured(sqlite_api, "SELECT RAW_EVENTS") as statements:
        async with sqlite_api.container.db.sessions() as session:
            ids = [f"raw_{i}" for i in range(50)]
            assert await _load_raws(session, tenant.id, ids) == {}
    assert len(statements) == 1
    found = await plan(sqlite_api, *statements[0])
    assert "sqlite_autoindex_raw_events_1 (id=?)" in found, found
    assert "tenant_id" not in found, found


async def test_the_queue_depth_gauge_reads_only_open_deliveries(sqlite_api: Api) -> None:
    with captured(sqlite_api, "SELECT WEBHOOK_DELIVERIES") as statements:
        await sqlite_api.container.delivery_worker.refresh_depth()
    assert len(statements) == 1
    found = await plan(sqlite_api, *statements[0])
    assert "ix_webhook_deliveries_status_endpoint_id (status=?)" in found, found


async def test_recovering_failed_deliveries_searches_the_endpoints_not_the_tenants(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    with captured(sqlite_api, "SELECT WEBHOOK_DELIVERIES") as statements:
        async with sqlite_api.container.db.sessions() as session:
            since = datetime.now(UTC) - timedelta(days=1)
            await WebhookRepository(session, tenant.id).failed_since("whe_1", since, 100)
    assert len(statements) == 1
    found = await plan(sqlite_api, *statements[0])
    assert "(endpoint_id=?" in found, found
    assert "tenant_id" not in found, found


async def test_purging_finished_jobs_reads_only_old_ones(sqlite_api: Api) -> None:
    with captured(sqlite_api, "SELECT JOBS") as captured_statements:
        async with sqlite_api.container.db.transaction() as session:
            await JobStore(session).purge_finished(datetime.now(UTC) - timedelta(days=1), 437)
    # The API's own maintenance may purge meanwhile: only this call's statements (its limit).
    statements = [(sql, params) for sql, params in captured_statements if 437 in tuple(params)]
    assert len(statements) == 1
    found = await plan(sqlite_api, *statements[0])
    assert "(status=? AND run_after<?)" in found, found


async def test_the_sweeper_finds_expired_leases_in_the_leased_jobs_index(sqlite_api: Api) -> None:
    """Only running jobs have a lease: the partial index on it holds only them (migration 0007),
    and the sweeper's "lease expired" search must use it, not read the jobs by status."""
    with captured(sqlite_api, "SELECT JOBS") as captured_statements:
        async with sqlite_api.container.db.transaction() as session:
            await JobStore(session).due_for_dispatch(datetime.now(UTC), timedelta(seconds=30), 439)
    statements = [(sql, params) for sql, params in captured_statements if 439 in tuple(params)]
    assert len(statements) == 1
    found = await plan(sqlite_api, *statements[0])
    assert "ix_jobs_lease_until (lease_until<?)" in found, found
    assert "(status=? AND run_after<?)" in found, found


async def test_pending_jobs_stay_out_of_the_leased_jobs_index(api: Api) -> None:
    """The index is partial where the database allows it: a pending job adds no entry."""
    if api.backend == "mariadb":
        pytest.skip("MariaDB has no partial indexes: the index holds every job there")
    async with api.container.db.engine.connect() as conn:
        if api.backend == "sqlite":
            sql = "SELECT sql FROM sqlite_master WHERE name = 'ix_jobs_lease_until'"
        else:
            sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_jobs_lease_until'"
        definition = str((await conn.exec_driver_sql(sql)).scalar_one())
    assert "lease_until IS NOT NULL" in definition, definition


async def inbound_jobs_plan(api: Api, make: Callable[[JobStore], Awaitable[object]]) -> str:
    """The plan of the one statement `make` runs to make inbound jobs from raw events."""
    with captured(api, "INSERT OR IGNORE INTO JOBS") as statements:
        async with api.container.db.transaction() as session:
            await make(JobStore(session))
    assert len(statements) == 1
    return await plan(api, *statements[0])


async def test_making_inbound_jobs_reads_their_raw_events_by_primary_key(sqlite_api: Api) -> None:
    """A worker makes a batch's inbound jobs from their raw events, by id: not by the pending
    raw events' index, which under a backlog holds every event still waiting (found with
    bench/pipeline_stages.py: 2.8 ms per 200-event batch with 2,000 pending, 0.5 ms by id)."""
    ids = [inbound_job_id(f"raw_{i}") for i in range(50)]
    found = await inbound_jobs_plan(sqlite_api, lambda jobs: jobs.make_inbound_jobs(ids, datetime.now(UTC)))
    assert "sqlite_autoindex_raw_events_1 (id=?)" in found, found
    assert "ix_raw_events_pending" not in found, found


async def test_the_sweeper_finds_raw_events_nobody_took_up_in_the_pending_index(sqlite_api: Api) -> None:
    before = datetime.now(UTC) - timedelta(seconds=30)
    found = await inbound_jobs_plan(sqlite_api, lambda jobs: jobs.adopt_waiting_raw_events(before, 100))
    assert "ix_raw_events_pending" in found, found
