"""The ingest stores' group commits: every submission gets its own true answer."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from sqlalchemy import select

from chatgate.domain.errors import ServiceUnavailable
from chatgate.domain.ids import new_id
from chatgate.domain.integrations import IntegrationKind
from chatgate.services import ingest_sqlite_writer
from chatgate.services.ingest import IngestWriter, RowStore
from chatgate.services.ingest_postgres import PostgresIngestStore
from chatgate.services.ingest_rows import (
    Committed,
    NewRaw,
    StoredIds,
    headers_json,
    inbound_job_id,
    stored_headers,
)
from chatgate.services.ingest_sqlite import SqliteIngestStore
from chatgate.store.db import sqlite_file
from chatgate.store.models import Job, RawEvent
from chatgate.store.repositories.jobs import JobStore
from chatgate.workers.queue import QueueItem
from tests.conftest import Api, database_url_for, make_settings, running_api, unique
from tests.ingest_writer_sync import WriterSync
from tests.webhook_helpers import webhook_integration


def _row(tenant_id: str, integration_id: str, event_id: str) -> NewRaw:
    return (tenant_id, integration_id, "webhook", event_id, {"content-type": "application/json"}, b"{}")


def _new(stored: StoredIds) -> list[str]:
    """The ids of the rows a store answered were stored new."""
    return [raw_id for raw_id in stored if raw_id is not None]


def test_stored_headers_are_compact_json_without_credentials() -> None:
    import json

    latin = bytes(range(0x20, 0x100)).decode("latin-1")  # what an ASGI header value may hold
    for headers in (
        {},
        {"a": "b"},
        {"user-agent": 'quote " back\\slash', "x-é": "ünïcode \u2028", "x-l": latin},
    ):
        encoded = headers_json(headers)
        assert json.loads(encoded) == headers
        assert encoded == json.dumps(headers, separators=(",", ":"), ensure_ascii=False)
        assert stored_headers(MappingProxyType(headers)) == encoded
    sent = {"content-type": "application/json", "authorization": "Bearer t", "cookie": "c=1"}
    sent["x-telegram-bot-api-secret-token"] = "s"
    assert json.loads(stored_headers(sent)) == {"content-type": "application/json"}


def _count(path: str, sql: str, *params: Any) -> int:
    with sqlite3.connect(path) as connection:
        value: int = connection.execute(sql, params).fetchone()[0]
    return value


async def test_a_batch_with_duplicates_stores_each_new_event_once(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = sqlite_file(sqlite_api.container.settings.effective_database_url)
    assert path is not None
    store = SqliteIngestStore(path, gate=sqlite_api.container.db.write_gate)
    tag = unique("e")
    now = datetime.now(UTC)
    try:
        # Stored before: these three are duplicates in the batch below.
        earlier = [_row(tenant.id, integration["id"], f"{tag}-{i}") for i in range(3)]
        assert len(_new(await store.store(earlier, now))) == 3
        # 40 event ids, each twice in one batch, the three old ones among them.
        burst = [_row(tenant.id, integration["id"], f"{tag}-{i}") for i in range(40)]
        burst += [_row(tenant.id, integration["id"], f"{tag}-{i}") for i in range(40)]
        stored = await store.store(burst, now)
    finally:
        await store.aclose()
    # Stored new: the first of each new pair, each under an id of its own.
    assert [raw_id is not None for raw_id in stored] == [False] * 3 + [True] * 37 + [False] * 40
    assert len(set(_new(stored))) == 37
    rows = _count(path, "SELECT count(*) FROM raw_events WHERE provider_event_id LIKE ?", f"{tag}-%")
    assert rows == 40
    pending = _count(
        path,
        "SELECT count(*) FROM raw_events WHERE provider_event_id LIKE ? AND status = 'pending'",
        f"{tag}-%",
    )
    assert pending == 40  # each waits for a worker, which makes its job


async def test_a_store_that_cannot_write_raises_and_recovers(tmp_path: Any) -> None:
    missing = tmp_path / "missing-dir"
    store = SqliteIngestStore(str(missing / "chatgate.db"))
    now = datetime.now(UTC)
    with pytest.raises(sqlite3.OperationalError):
        await store.store([_row("t", "i", "e1")], now)
    # The directory appears (a volume mounted late): the next batch opens a fresh connection.
    missing.mkdir()
    with sqlite3.connect(missing / "chatgate.db") as connection:
        connection.execute(
            "CREATE TABLE raw_events (id TEXT PRIMARY KEY, tenant_id TEXT, integration_id TEXT, kind TEXT,"
            " provider_event_id TEXT, headers TEXT, body BLOB, status TEXT, received_at TEXT,"
            " UNIQUE (integration_id, provider_event_id))"
        )
        connection.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT, tenant_id TEXT, subject_id TEXT, status TEXT,"
            " run_after TEXT, attempts INTEGER, dispatched_at TEXT, created_at TEXT)"
        )
    try:
        assert len(_new(await store.store([_row("t", "i", "e1")], now))) == 1
    finally:
        await store.aclose()


async def assert_submit_answers_503(api: Api, store: SqliteIngestStore) -> None:
    """The API's IngestWriter, given `store` for one submission, answers it 503 ("retry")."""
    writer = api.container.ingest
    working = writer.row_store
    assert isinstance(working, SqliteIngestStore)
    writer.row_store = store
    try:
        with pytest.raises(ServiceUnavailable, match="retry"):
            await writer.submit(
                tenant_id="t",
                integration_id="i",
                kind="webhook",
                provider_event_id="x",
                headers={},
                body=b"{}",
            )
    finally:
        await store.aclose()
        writer.row_store = working


async def test_the_writer_turns_a_failed_commit_into_503(sqlite_api: Api) -> None:
    await assert_submit_answers_503(sqlite_api, SqliteIngestStore("/nonexistent-dir/chatgate.db"))


async def test_the_writer_answers_a_burst_with_duplicates_on_every_database(quiet: Api) -> None:
    """Whatever the database (SQLite's inline batch, PostgreSQL's one-statement batch, the
    generic path on MariaDB): concurrent submissions each learn whether they were new. Workers
    off (`quiet`): the test looks at what the ingest alone stored."""
    api = quiet
    writer = api.container.ingest
    assert isinstance(writer.row_store, PostgresIngestStore) == (api.backend == "postgresql")
    assert isinstance(writer.row_store, SqliteIngestStore) == (api.backend == "sqlite")
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    tag = unique("w")

    async def submit(event_id: str) -> bool:
        return await api.container.ingest.submit(
            tenant_id=tenant.id,
            integration_id=integration["id"],
            kind="webhook",
            provider_event_id=event_id,
            headers={"content-type": "application/json", "authorization": "Bearer secret"},
            body=b'{"type":"message.received"}',
        )

    assert await submit(f"{tag}-0") is True
    burst = [f"{tag}-{i}" for i in range(30)] * 2
    answers = await asyncio.gather(*(submit(e) for e in burst))
    new = [e for e, a in zip(burst, answers, strict=True) if a]
    assert sorted(new) == sorted(f"{tag}-{i}" for i in range(1, 30))  # each new id once; -0 was stored before
    async with api.container.db.sessions() as session:
        rows = (
            await session.execute(
                select(RawEvent.id, RawEvent.headers, RawEvent.received_at).where(
                    RawEvent.provider_event_id.like(f"{tag}-%")
                )
            )
        ).all()
        made_at_ingest = (
            await session.execute(select(Job.id).where(Job.subject_id.in_([r.id for r in rows])))
        ).all()
    assert len(rows) == 30
    assert made_at_ingest == []  # the ingest stores a raw event alone
    # A worker taking them up makes their jobs, named after their events, once (here on every
    # database: the statement differs). A job id not named after a raw event makes nothing.
    job_ids = [inbound_job_id(r.id) for r in rows]
    now = datetime.now(UTC)
    for _ in range(2):
        async with api.container.db.transaction() as session:
            await JobStore(session).make_inbound_jobs([*job_ids, new_id("job")], now)
    async with api.container.db.sessions() as session:
        jobs = (
            await session.execute(
                select(Job.id, Job.subject_id, Job.status, Job.kind, Job.tenant_id, Job.run_after).where(
                    Job.tenant_id == tenant.id
                )
            )
        ).all()
    received = {r.id: r.received_at for r in rows}
    assert sorted(job.id for job in jobs) == sorted(job_ids)
    for job in jobs:
        assert job.id == inbound_job_id(job.subject_id)  # named after its event
        assert (job.status, job.kind, job.tenant_id) == ("pending", "inbound", tenant.id)
        assert job.run_after == received[job.subject_id]  # due since the event came
    assert all(
        "authorization" not in r.headers and r.headers["content-type"] == "application/json" for r in rows
    )
    assert all(r.received_at.tzinfo is not None for r in rows)


def _sqlite_path(api: Api) -> str:
    path = sqlite_file(api.container.settings.effective_database_url)
    assert path is not None
    return path


async def test_new_events_are_stored_pending_in_arrival_order_and_alone(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = _sqlite_path(sqlite_api)
    store = SqliteIngestStore(path, gate=sqlite_api.container.db.write_gate)
    rows = [_row(tenant.id, integration["id"], unique("job")) for _ in range(5)]
    # Now (a job dispatched long ago would be the sweeper's to re-dispatch meanwhile).
    now = datetime.now(UTC).replace(microsecond=456789)
    try:
        stored = await store.store(rows, now)
    finally:
        await store.aclose()
    ids = _new(stored)
    assert len(ids) == 5
    assert ids == sorted(ids)  # in the order the rows came: arrival order
    with sqlite3.connect(path) as connection:
        jobs = connection.execute(
            "SELECT count(*) FROM jobs WHERE subject_id IN (?, ?, ?, ?, ?)", ids
        ).fetchone()
        events = connection.execute(
            "SELECT id, provider_event_id, headers, status, received_at FROM raw_events"
            " WHERE id IN (?, ?, ?, ?, ?) ORDER BY id",
            ids,
        ).fetchall()
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.456789")
    assert jobs == (0,)  # made when a worker takes the event up
    assert events == [
        (raw_id, row[3], '{"content-type":"application/json"}', "pending", stamp)
        for raw_id, row in zip(ids, rows, strict=True)
    ]
    assert inbound_job_id("raw_01jabc") == "job_01jabc"


async def test_a_batch_larger_than_one_statement_is_stored_in_one_transaction(sqlite_api: Api) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = _sqlite_path(sqlite_api)
    store = SqliteIngestStore(path, gate=sqlite_api.container.db.write_gate)
    tag = unique("big")
    try:
        first = await store.store([_row(tenant.id, integration["id"], f"{tag}-7")], datetime.now(UTC))
        assert len(_new(first)) == 1
        # 2,500 rows (three statements' worth), 2,400 distinct events of which one was stored.
        burst = [_row(tenant.id, integration["id"], f"{tag}-{i % 2400}") for i in range(2500)]
        stored = await store.store(burst, datetime.now(UTC))
    finally:
        await store.aclose()
    assert len(_new(stored)) == 2399
    assert [raw_id is not None for raw_id in stored] == [i < 2400 and i != 7 for i in range(2500)]
    like = f"{tag}-%"
    assert _count(path, "SELECT count(*) FROM raw_events WHERE provider_event_id LIKE ?", like) == 2400
    pending = "SELECT count(*) FROM raw_events WHERE provider_event_id LIKE ? AND status = 'pending'"
    assert _count(path, pending, like) == 2400


async def test_the_event_loop_runs_on_while_a_batch_waits_for_the_database(sqlite_api: Api) -> None:
    """The batch's statement runs in the writer process: while another process holds SQLite's
    write lock, the batch waits there (busy timeout) and the loop keeps serving."""
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = _sqlite_path(sqlite_api)
    store = SqliteIngestStore(path, gate=sqlite_api.container.db.write_gate)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        blocker.execute("BEGIN IMMEDIATE")
        storing = asyncio.create_task(
            store.store([_row(tenant.id, integration["id"], unique("held"))], datetime.now(UTC))
        )
        await asyncio.sleep(0.5)
        assert not storing.done()
        assert ticks >= 20  # the loop was not stuck in SQLite's busy wait
        blocker.execute("COMMIT")
        assert len(await asyncio.wait_for(storing, 10)) == 1
    finally:
        ticking.cancel()
        blocker.close()
        await store.aclose()


async def test_a_writer_that_dies_fails_its_batch_and_the_next_batch_starts_another(
    sqlite_api: Api, tmp_path: Any
) -> None:
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = _sqlite_path(sqlite_api)
    held = WriterSync(tmp_path)
    store = SqliteIngestStore(path, gate=sqlite_api.container.db.write_gate, command=held.command(path))
    tag = unique("dies")
    held.hold()
    try:
        first = asyncio.create_task(
            store.store([_row(tenant.id, integration["id"], f"{tag}-1")], datetime.now(UTC))
        )
        await held.started()  # committed, waiting for its sync
        pid = store.writer_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ServiceUnavailable, match="writer process stopped"):
            await asyncio.wait_for(first, 10)
        held.release()
        # The provider retries: the event was committed before the writer died, so it is a duplicate.
        again = [
            _row(tenant.id, integration["id"], f"{tag}-1"),
            _row(tenant.id, integration["id"], f"{tag}-2"),
        ]
        stored = await asyncio.wait_for(store.store(again, datetime.now(UTC)), 10)
        assert stored[0] is None
        assert stored[1] is not None
        assert store.writer_pid not in (None, pid)
    finally:
        held.release()
        await store.aclose()
    assert _count(path, "SELECT count(*) FROM raw_events WHERE provider_event_id LIKE ?", f"{tag}-%") == 2


async def _running_writer(api: Api) -> tuple[SqliteIngestStore, int, NewRaw]:
    """A store whose writer process has stored a row: (the store, the writer's pid, a row of
    the same integration, for more)."""
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    store = SqliteIngestStore(_sqlite_path(api), gate=api.container.db.write_gate)
    await store.store([_row(tenant.id, integration["id"], unique("a"))], datetime.now(UTC))
    pid = store.writer_pid
    assert pid is not None
    return store, pid, _row(tenant.id, integration["id"], unique("b"))


async def test_the_writer_ignores_stop_signals_and_exits_when_the_store_closes(sqlite_api: Api) -> None:
    """A Ctrl-C or a service manager's SIGTERM to the whole process group must not cut the
    batches in flight: the writer stops when the server closes its pipe."""
    store, pid, another = await _running_writer(sqlite_api)
    try:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        stored = await store.store([another], datetime.now(UTC))
        assert len(_new(stored)) == 1
        assert store.writer_pid == pid
    finally:
        await store.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped
    assert store.writer_pid is None


def _batch_class_allowed() -> bool:
    """Whether a process may switch itself to SCHED_BATCH here (some sandboxes refuse; the
    writer then runs as it was started)."""
    probe = "import os; os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))"
    return (
        hasattr(os, "SCHED_BATCH")
        and subprocess.run([sys.executable, "-c", probe], capture_output=True, check=False).returncode == 0
    )


async def test_the_writer_runs_as_a_batch_process_beside_the_event_loop(sqlite_api: Api) -> None:
    if not _batch_class_allowed():
        pytest.skip("this system does not let a process switch to SCHED_BATCH")
    store, pid, _ = await _running_writer(sqlite_api)
    try:
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH
        assert os.sched_getscheduler(0) != os.SCHED_BATCH  # the server's own class is left alone
    finally:
        await store.aclose()


async def test_what_the_writer_writes_to_its_stderr_is_logged_not_read_as_answers(
    sqlite_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A warning or traceback on the writer's stderr (a pipe to the server, like its stdout)
    once corrupted the answers: the server read it as frames, and the batch never got one."""
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = _sqlite_path(sqlite_api)
    noisy = (
        "import sys; sys.stderr.write('a warning from the writer\\n'); sys.stderr.flush(); "
        "from chatgate.services.ingest_sqlite_writer import main; main(sys.argv[1:])"
    )
    store = SqliteIngestStore(
        path, gate=sqlite_api.container.db.write_gate, command=[sys.executable, "-c", noisy, path]
    )
    try:
        for _ in range(3):
            row = _row(tenant.id, integration["id"], unique("noisy"))
            storing = asyncio.create_task(store.store([row], datetime.now(UTC)))
            done, _ = await asyncio.wait({storing}, timeout=10)
            if not done:  # killing the writer settles the stuck batch: the test fails, not hangs
                pid = store.writer_pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                await asyncio.wait({storing})
                pytest.fail("the batch got no answer from the writer")
            assert len(_new(storing.result())) == 1
    finally:
        await store.aclose()
    assert "a warning from the writer" in caplog.text


async def test_a_writer_that_cannot_start_answers_503(sqlite_api: Api, tmp_path: Any) -> None:
    command = [str(tmp_path / "no-such-python"), "-m", "x"]
    await assert_submit_answers_503(sqlite_api, SqliteIngestStore(_sqlite_path(sqlite_api), command=command))


def test_frames_are_read_whole_from_any_chunks() -> None:
    frames = [(ingest_sqlite_writer.BATCH, ingest_sqlite_writer.encode(["raw_1", b"\x00body", None]))]
    frames += [(ingest_sqlite_writer.DURABLE, b""), (ingest_sqlite_writer.COMMITTED, b"x" * 70_000)]
    stream = b"".join(ingest_sqlite_writer.frame(kind, payload) for kind, payload in frames)
    for size in (1, 3, 5, 4096, len(stream)):
        reader = ingest_sqlite_writer.FrameReader()
        got: list[tuple[bytes, bytes]] = []
        for start in range(0, len(stream), size):
            got += reader.feed(stream[start : start + size])
        assert got == frames, size
    assert ingest_sqlite_writer.decode(frames[0][1]) == ["raw_1", b"\x00body", None]


async def test_enum_kinds_and_bytearray_bodies_reach_the_writer_as_plain_values(sqlite_api: Api) -> None:
    """The writer's pipe carries plain str and bytes: a StrEnum kind or a bytearray body (what
    some adapters hand over) must be stored, not refused."""
    tenant = await sqlite_api.tenant()
    integration = await webhook_integration(sqlite_api, tenant)
    path = _sqlite_path(sqlite_api)
    store = SqliteIngestStore(path, gate=sqlite_api.container.db.write_gate)
    headers = MappingProxyType({"content-type": "application/json", "authorization": "Bearer x"})
    row = (
        tenant.id,
        integration["id"],
        IntegrationKind.WEBHOOK,
        unique("plain"),
        headers,
        bytearray(b'{"a":1}'),
    )
    try:
        (raw_id,) = await store.store([row], datetime.now(UTC))  # type: ignore[list-item]
    finally:
        await store.aclose()
    stored = _count(
        path,
        "SELECT count(*) FROM raw_events WHERE id = ? AND kind = 'webhook' AND body = ? AND headers = ?",
        raw_id,
        b'{"a":1}',
        '{"content-type":"application/json"}',  # credentials are not kept
    )
    assert stored == 1


async def test_a_row_the_database_refuses_does_not_fail_its_neighbours(quiet: Api) -> None:
    """A batch with a row naming an integration that no longer exists (its foreign key fails):
    the batch is stored again one row at a time, so the others are stored and answered as new,
    and nothing is stored for the refused one. On every database (each fails differently)."""
    api = quiet
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    tag = unique("refused")
    events = [(integration["id"], f"{tag}-0"), (new_id("int"), f"{tag}-1"), (integration["id"], f"{tag}-2")]
    answers = await asyncio.gather(
        *(
            api.container.ingest.submit(
                tenant_id=tenant.id,
                integration_id=integration_id,
                kind="webhook",
                provider_event_id=event_id,
                headers={},
                body=b"{}",
            )
            for integration_id, event_id in events
        )
    )
    assert answers == [True, False, True]
    async with api.container.db.sessions() as session:
        stored = (
            await session.execute(
                select(RawEvent.provider_event_id).where(RawEvent.provider_event_id.like(f"{tag}-%"))
            )
        ).scalars()
        assert sorted(stored) == [f"{tag}-0", f"{tag}-2"]


class _TurnRecordingStore:
    """The database's own row store, one batch at a time, noting the event loop's turn at which
    each batch reached it and at which its answer came back."""

    def __init__(self, store: RowStore, turn: Callable[[], int]) -> None:
        self.inner = store
        self.turn = turn
        self.connections = 1
        self.parallel = store.parallel
        self.constraint_errors = store.constraint_errors
        self.batches: list[tuple[int, int, int]] = []  # (rows, turn sent, turn answered)
        self.sent = asyncio.Event()

    async def store(self, rows: list[NewRaw], now: datetime, committed: Committed | None = None) -> StoredIds:
        sent = self.turn()
        self.sent.set()
        stored = await self.inner.store(rows, now, committed)
        self.batches.append((len(rows), sent, self.turn()))
        return stored

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_next_batch_goes_out_in_the_turn_the_last_one_is_answered(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """Requests that arrived while a batch was being stored go out as the next batch in the very
    turn of the event loop that the answer comes back in: under load a turn takes about a
    millisecond, and every turn lost there is a millisecond every waiting request waits longer."""
    url = await database_url_for(backend, request, tmp_path)
    async with running_api(make_settings(tmp_path, url, run_workers_in_api=False), backend) as api:
        own = api.container.ingest.row_store
        assert own is not None
        turns = 0

        def count_turns() -> None:
            nonlocal turns
            turns += 1
            ticking[0] = asyncio.get_running_loop().call_soon(count_turns)

        ticking = [asyncio.get_running_loop().call_soon(count_turns)]
        store = _TurnRecordingStore(own, lambda: turns)
        published: list[QueueItem] = []

        async def publish(topic: str, items: list[QueueItem]) -> None:
            published.extend(items)

        writer = IngestWriter(api.container.db, publish, api.container.clock, row_store=store)
        tenant = await api.tenant()
        integration = await webhook_integration(api, tenant)
        tag = unique("turn")

        def submit(i: int) -> asyncio.Future[bool]:
            return writer.submit(
                tenant_id=tenant.id,
                integration_id=integration["id"],
                kind="webhook",
                provider_event_id=f"{tag}-{i}",
                headers={},
                body=b"{}",
            )

        answered: list[tuple[bool | BaseException, int]] = []  # submit_then's answers, and their turn

        def then(outcome: bool | BaseException) -> None:
            answered.append((outcome, turns))

        def failing_then(outcome: bool | BaseException) -> None:
            answered.append((outcome, turns))
            raise RuntimeError("the client's answer could not be written")

        def row(i: int) -> NewRaw:
            return (tenant.id, integration["id"], "webhook", f"{tag}-{i}", {}, b"{}")

        try:
            first = [submit(i) for i in range(3)]
            writer.submit_then(row(3), failing_then)  # cannot keep the others from their answers
            writer.submit_then(row(4), then)
            writer.submit_then(row(0), then)  # a duplicate within the batch
            await store.sent.wait()  # the first batch is on its way: these wait for the next
            second = [submit(i) for i in range(5, 10)]
            writer.submit_then(row(10), then)
            assert await asyncio.wait_for(asyncio.gather(*first, *second), 30) == [True] * 8
        finally:
            ticking[0].cancel()
            await writer.aclose()
    (_, _, first_answered), (_, second_sent, second_answered) = store.batches
    assert second_sent == first_answered
    assert len(published) == 11  # the duplicate publishes nothing
    # Answered by a plain call in the very turn the batch came back (a future's callback would
    # run a turn later, after whatever requests that turn parses first).
    if store.parallel:
        # PostgreSQL: the idle writer sends the first row at once, alone; the rest wait for it.
        assert [rows for rows, _, _ in store.batches] == [1, 11]
        first_three = second_answered
    else:
        # SQLite: the first batch leaves at the next turn, with all submitted in this one.
        assert [rows for rows, _, _ in store.batches] == [6, 6]
        first_three = first_answered
    assert answered == [
        (True, first_three),
        (True, first_three),
        (False, first_three),
        (True, second_answered),
    ]


async def test_submissions_answered_by_a_call_learn_of_a_failed_store_and_of_shutdown(
    sqlite_api: Api,
) -> None:
    writer = sqlite_api.container.ingest
    working = writer.row_store
    broken = SqliteIngestStore("/nonexistent-dir/chatgate.db")
    writer.row_store = broken
    answered: list[bool | BaseException] = []
    try:
        writer.submit_then(("t", "i", "webhook", "x", {}, b"{}"), answered.append)
        for _ in range(200):
            if answered:
                break
            await asyncio.sleep(0.01)
    finally:
        await broken.aclose()
        writer.row_store = working
    assert len(answered) == 1
    assert isinstance(answered[0], ServiceUnavailable)
    assert "retry" in answered[0].message
    stopped: list[bool | BaseException] = []
    own = IngestWriter(
        sqlite_api.container.db, _publish_nothing, sqlite_api.container.clock, row_store=working
    )
    await own.aclose()
    with pytest.raises(ServiceUnavailable, match="shutting down"):
        own.submit_then(("t", "i", "webhook", "y", {}, b"{}"), stopped.append)
    assert stopped == []  # refused at once, not answered later as well


async def _publish_nothing(topic: str, items: list[QueueItem]) -> None:
    return None


class _HeldStore:
    """The database's own row store, with two batches side by side, each held until the test
    lets it through: what a batch meets is the test's to choose."""

    def __init__(self, store: RowStore, *, parallel: bool) -> None:
        self.inner = store
        self.connections = 2
        self.parallel = parallel
        self.constraint_errors = store.constraint_errors
        self.sent: list[int] = []  # rows per batch, in the order they reached the store
        self.gates: list[asyncio.Event] = []
        self._released = False

    async def store(self, rows: list[NewRaw], now: datetime, committed: Committed | None = None) -> StoredIds:
        self.sent.append(len(rows))
        gate = asyncio.Event()
        self.gates.append(gate)
        if not self._released:
            await gate.wait()
        return await self.inner.store(rows, now, committed)

    def release(self) -> None:
        """Let every batch through, those to come too (a failed test's writer can then close)."""
        self._released = True
        for gate in self.gates:
            gate.set()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _writer_on_held_store(
    api: Api, *, parallel: bool
) -> tuple[_HeldStore, IngestWriter, Callable[[int], NewRaw]]:
    """A writer of its own on the API's row store, held (`_HeldStore`); and the i-th row of a
    new webhook integration."""
    own = api.container.ingest.row_store
    assert own is not None
    store = _HeldStore(own, parallel=parallel)
    writer = IngestWriter(api.container.db, _publish_nothing, api.container.clock, row_store=store)
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    tag = unique("held")

    def row(i: int) -> NewRaw:
        return (tenant.id, integration["id"], "webhook", f"{tag}-{i}", {}, b"{}")

    return store, writer, row


async def test_a_batch_leaves_in_the_call_that_fills_its_share(sqlite_api: Api) -> None:
    """With a store that stores its batches in parallel (PostgreSQL's): an idle writer sends a
    webhook in the call that submits it (no turn of the event loop first); under load a batch
    leaves as soon as its share of the rows in the server is waiting (the rows in flight and
    waiting, divided by the batches that may be in flight), so that a burst read in one turn goes
    out as batches side by side, not as one while the others idle."""
    store, writer, row = await _writer_on_held_store(sqlite_api, parallel=True)
    answers: list[bool | BaseException] = []
    count = iter(range(1000))

    def submit() -> None:
        writer.submit_then(row(next(count)), answers.append)

    async def let_through(index: int) -> None:
        store.gates[index].set()
        for _ in range(500):
            if len(answers) >= expected[index]:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"batch {index} was not answered")

    try:
        submit()
        assert store.sent == [1]  # sent within the call
        submit()
        assert store.sent == [1, 1]  # the second may be in flight too: sent at once as well
        for _ in range(8):
            submit()  # both in flight: these wait
        await asyncio.sleep(0)
        assert store.sent == [1, 1]
        expected = [1, 2, 10, 14]  # answers once each batch is through
        await let_through(0)  # its answer takes the 8 waiting: 9 rows in the server, 4 a share
        assert store.sent == [1, 1, 8]
        await let_through(1)  # one batch in flight now, one may start
        for _ in range(3):
            submit()
        assert store.sent == [1, 1, 8]  # 3 of a share of 4: they wait for the loop's turn
        submit()
        assert store.sent == [1, 1, 8, 4]  # the fourth sends them, within its call
        await let_through(2)
        await let_through(3)
    finally:
        store.release()
        await writer.aclose()
    assert answers == [True] * 14


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_fresh_writer_stores_a_webhook_submitted_outside_any_task(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """The HTTP protocol submits from a socket callback, outside any task, and the batch's first
    step runs right there (`start_eagerly`): with no connection open yet, the store connects
    from it (asyncpg's connect timeout needs a task of its own)."""
    url = await database_url_for(backend, request, tmp_path)
    async with running_api(make_settings(tmp_path, url, run_workers_in_api=False), backend) as api:
        own = api.container.ingest.row_store
        fresh: RowStore = (
            PostgresIngestStore(own.dsn)
            if isinstance(own, PostgresIngestStore)
            else SqliteIngestStore(_sqlite_path(api), gate=api.container.db.write_gate)
        )
        writer = IngestWriter(api.container.db, _publish_nothing, api.container.clock, row_store=fresh)
        tenant = await api.tenant()
        integration = await webhook_integration(api, tenant)
        answered: asyncio.Future[bool | BaseException] = asyncio.get_running_loop().create_future()
        row = (tenant.id, integration["id"], "webhook", unique("outside"), {}, b"{}")
        try:
            asyncio.get_running_loop().call_soon(writer.submit_then, row, answered.set_result)
            assert await asyncio.wait_for(answered, 30) is True
        finally:
            await writer.aclose()


async def test_a_store_taking_batches_one_after_another_gets_them_at_the_next_turn(
    sqlite_api: Api,
) -> None:
    """SQLite's writer stores batches one after another: they are not split into shares, and
    leave at the loop's next turn with whatever has come by then, not in the submitting call,
    and not a turn later (a scheduled call making the task, which then takes a turn to start,
    cost SQLite ≈ 9 % of its webhooks per second)."""
    own = sqlite_api.container.ingest.row_store
    assert isinstance(own, SqliteIngestStore)
    assert own.parallel is False
    store, writer, row = await _writer_on_held_store(sqlite_api, parallel=False)
    answers: list[bool | BaseException] = []
    try:
        for i in range(3):
            writer.submit_then(row(i), answers.append)
        assert store.sent == []  # not within the calls
        await asyncio.sleep(0)
        assert store.sent == [3]  # the next turn: all three in one batch
        store.gates[0].set()
        for _ in range(500):
            if answers:
                break
            await asyncio.sleep(0.01)
    finally:
        store.release()
        await writer.aclose()
    assert answers == [True] * 3
