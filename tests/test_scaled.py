"""Scaled mode end to end: two API processes and two worker processes on real PostgreSQL,
Redis and RabbitMQ, under load, while one worker is SIGKILLed and the broker restarts.

What must hold afterwards (ARCHITECTURE.md invariants 1-3 and 8):

* every acknowledged inbound webhook became exactly one inbound message and exactly one
  `message.received` event, also across provider retries and re-deliveries;
* every accepted send reached the receiving site; a second delivery happens only for a send
  the killed worker had in flight (the documented crash window: the site accepted, the commit
  never came), and the number is printed;
* every send ends `sent`, no job is left pending or running, the surviving worker finished
  the killed worker's leased jobs, and each tenant's event sequence is 1..N without gaps.

Timing: the killed worker's claimed jobs are taken over once their lease expires
(CHATGATE_JOB_LEASE_SECONDS, 60 s by default, 15 s here); the test waits for that (bounded)
and prints how long it took. The lease must stay well above the longest send
(CHATGATE_OUTBOUND_TIMEOUT_SECONDS), or a live worker's send could be taken over and repeated.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from chatgate.store.models import Event, Integration, Job, Message, RawEvent, TenantSequence
from tests.conftest import unique
from tests.scaled_harness import (
    LoadStats,
    Proc,
    Site,
    bootstrap_tenant,
    free_port,
    percentile,
    scaled_env,
    signed_webhook,
    until_acknowledged,
    wait_ready,
)
from tests.servers import PostgresServer, RabbitMQServer, RedisServer
from tests.webhook_helpers import INBOUND_SECRET, OUTBOUND_SECRET, message_payload

pytestmark = pytest.mark.slow

INBOUND = 600  # distinct inbound webhooks (distinct webhook-id and message id)
SENDS = 300  # distinct POST /v1/messages (distinct Idempotency-Key)
CONCURRENCY = 20  # requests in flight at once
RATE = 40.0  # requests started per second: the load lasts ~25 s, long enough for the chaos
SITE_DELAY = 0.5  # the site answers slowly, so sends are in flight when the worker dies
LEASE_SECONDS = 15  # CHATGATE_JOB_LEASE_SECONDS: how long a dead worker's jobs stay claimed
SEND_TIMEOUT_SECONDS = 5  # CHATGATE_OUTBOUND_TIMEOUT_SECONDS, well below the lease
KILL_AT, RESTART_AT = 0.30, 0.55  # fractions of the load
OVERALL_SECONDS = 240.0


@dataclass
class Tenant:
    slug: str
    id: str
    key: str
    integration: dict[str, Any] = field(default_factory=dict)
    inbound_ids: set[str] = field(default_factory=set)  # acknowledged provider message ids
    raw_expected: int = 0  # acknowledged distinct webhook-ids
    accepted: set[str] = field(default_factory=set)  # chatgate message ids of accepted sends

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@dataclass
class Chaos:
    victim: Proc
    survivor: Proc
    killed_at: float = 0.0
    in_flight: list[tuple[str, str, str]] = field(default_factory=list)  # (job id, kind, subject)
    restart_window: tuple[float, float] = (0.0, 0.0)
    acked_during_restart: int = 0


@dataclass
class Figures:
    """What the test prints (and records as properties), and the invariant violations it saw.

    Violations are collected rather than raised at once, so one run reports all of them."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def put(self, name: str, value: Any) -> None:
        self.values[name] = value

    def expect(self, condition: object, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


async def test_scaled_mode_survives_worker_crash_and_broker_restart(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    rabbitmq_server: RabbitMQServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    await asyncio.to_thread(rabbitmq_server.start)  # no-op when running (an earlier test may stop it)
    db_name = unique("cg_scaled_")
    database_url = await asyncio.to_thread(postgres_server.create_database, db_name)
    env = scaled_env(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_server.url,
        rabbitmq_url=rabbitmq_server.url,
        CHATGATE_JOB_LEASE_SECONDS=str(LEASE_SECONDS),
        CHATGATE_OUTBOUND_TIMEOUT_SECONDS=str(SEND_TIMEOUT_SECONDS),
    )
    site = Site(delay=SITE_DELAY)
    await site.start()
    engine = create_async_engine(database_url, pool_size=4)
    procs: list[Proc] = []
    figures = Figures()
    started = time.monotonic()
    try:
        async with asyncio.timeout(OVERALL_SECONDS):
            await _scenario(env, tmp_path, site, engine, rabbitmq_server, procs, figures)
    except BaseException:
        print(f"\nprocess logs: {', '.join(str(p.log_path) for p in procs)}")
        for proc in procs:
            if not proc.alive() and proc is not procs[-1]:  # procs[-1] is the worker we kill
                print(f"--- {proc.name} exited with {proc.popen.returncode} ---\n{proc.tail(30)}")
        raise
    finally:
        for proc in procs:
            proc.stop()
            figures.put(f"log_{proc.name}", _log_summary(proc))
        await site.close()
        await engine.dispose()
        await asyncio.to_thread(rabbitmq_server.start)  # leave the session broker running
        await asyncio.to_thread(postgres_server.drop_database, db_name)
        figures.put("runtime_seconds", round(time.monotonic() - started, 1))
        print("\nscaled-mode figures:")
        for name, value in figures.values.items():
            print(f"  {name}: {value}")
            record_property(name, value)


async def _scenario(
    env: dict[str, str],
    tmp_path: Path,
    site: Site,
    engine: AsyncEngine,
    rabbit: RabbitMQServer,
    procs: list[Proc],
    figures: Figures,
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    # -- deploy: bootstrap (it also migrates the empty database), 2 APIs, 2 workers ---------
    tenants: list[Tenant] = []
    for slug in ("scaled-a", "scaled-b"):
        tenant_id, key = await asyncio.to_thread(
            bootstrap_tenant, env, tmp_path, f"owner@{slug}.example", slug
        )
        tenants.append(Tenant(slug, tenant_id, key))
    apis = [
        Proc.start(f"api{n}", ["serve", "--port", str(port)], env, tmp_path, port)
        for n, port in ((1, free_port()), (2, free_port()))
    ]
    workers = [Proc.start(f"worker{n}", ["worker"], env, tmp_path) for n in (1, 2)]
    procs.extend([*apis, *workers])
    await asyncio.gather(*(wait_ready(api) for api in apis))
    await _wait_for_consumers(rabbit, workers, expected=2)

    limits = httpx.Limits(max_connections=CONCURRENCY + 5)
    clients = [httpx.AsyncClient(base_url=api.base, timeout=30.0, limits=limits) for api in apis]
    try:
        for tenant in tenants:
            created = await clients[0].post(
                "/v1/integrations",
                json={
                    "kind": "webhook",
                    "name": f"site of {tenant.slug}",
                    "config": {"outbound_url": f"{site.url}/{tenant.slug}"},
                    "credentials": {"inbound_secret": INBOUND_SECRET, "outbound_secret": OUTBOUND_SECRET},
                },
                headers=tenant.headers,
            )
            assert created.status_code == 201, created.text
            tenant.integration = created.json()

        # -- load, with a worker crash and a broker restart in the middle -------------------
        stats = LoadStats()
        acked_at: list[float] = []
        jobs = _build_load(tenants, clients, stats, acked_at, figures)
        chaos = Chaos(victim=workers[1], survivor=workers[0])
        marks = {KILL_AT: asyncio.Event(), RESTART_AT: asyncio.Event()}
        load_started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            group.create_task(_drive(jobs, marks))
            group.create_task(_chaos(chaos, marks, sessions, rabbit))
        load_seconds = time.monotonic() - load_started
        start, end = chaos.restart_window
        chaos.acked_during_restart = sum(1 for t in acked_at if start <= t <= end)
        for api in apis:
            assert api.alive(), f"{api.name} died:\n{api.tail()}"
        assert chaos.survivor.alive(), f"the surviving worker died:\n{chaos.survivor.tail()}"
    finally:
        for client in clients:
            await client.aclose()

    figures.put("load_seconds", round(load_seconds, 1))
    figures.put("requests_acknowledged", len(acked_at))
    figures.put("non_2xx_answers", dict(stats.non_2xx))
    figures.put("transport_errors", dict(stats.transport_errors))
    figures.put("client_retries", stats.retries)
    figures.put("latency_p50_ms", round(percentile(stats.latencies, 0.5) * 1000))
    figures.put("latency_p99_ms", round(percentile(stats.latencies, 0.99) * 1000))
    figures.put("latency_max_ms", round(max(stats.latencies, default=0) * 1000))
    figures.put("broker_restart_seconds", round(end - start, 1))
    figures.put("acknowledged_while_broker_restarting", chaos.acked_during_restart)
    pattern = re.compile(r"(\d+) of \d+ item\(s\) for topic \w+ not queued")
    dropped = sum(int(n) for api in apis for n in pattern.findall(api.output()))
    figures.put("api_queue_items_dropped_while_broker_down", dropped)  # re-dispatched by the sweeper
    figures.put("killed_worker_in_flight_jobs", dict(Counter(kind for _, kind, _ in chaos.in_flight)))

    # -- settle (bounded): the killed worker's leases must expire before its jobs move on ---
    takeover_seconds = await _settle(sessions, tenants, site, chaos, rabbit, workers, figures)
    figures.put("takeover_after_kill_seconds", round(takeover_seconds, 1))

    # -- verify ------------------------------------------------------------------------------
    await _verify(sessions, tenants, site, chaos, figures, workers)

    # The API kept acknowledging while the broker was away (it stores, then publishes best-effort).
    figures.expect(chaos.acked_during_restart > 0, "no request was acknowledged while RabbitMQ restarted")
    figures.expect(
        stats.not_acknowledged == 0,
        f"the API refused requests: {dict(stats.non_2xx)} {dict(stats.transport_errors)}",
    )
    assert not figures.problems, "invariant violations:\n- " + "\n- ".join(figures.problems)


# --------------------------------------------------------------------------- load


Job_ = Callable[[], Awaitable[None]]


def _build_load(
    tenants: list[Tenant],
    clients: list[httpx.AsyncClient],
    stats: LoadStats,
    acked_at: list[float],
    figures: Figures,
) -> list[Job_]:
    """600 inbound webhooks and 300 sends over both APIs and both tenants, shuffled.

    Some carry a follow-up once acknowledged: a provider retry with the same webhook-id
    (answered as a duplicate), a re-delivery of the same message under a new webhook-id, a
    client retry with the same Idempotency-Key, or the same key sent to both APIs at once.
    """
    run_id = unique("")

    def ack(response: httpx.Response) -> httpx.Response:
        acked_at.append(time.monotonic())
        return response

    def inbound(i: int) -> Job_:
        tenant = tenants[1 if i % 3 == 2 else 0]
        client, other = clients[i % 2], clients[(i + 1) % 2]
        message_id = f"m-{run_id}-{i}"
        payload = message_payload(
            f"inbound {i}", message_id=message_id, chat=f"chat-{i % 25}", sender=f"user-{i % 25}"
        )
        path = tenant.integration["inbound_path"]

        def post(via: httpx.AsyncClient, event_id: str) -> Callable[[], Awaitable[httpx.Response]]:
            async def call() -> httpx.Response:
                body, headers = signed_webhook(INBOUND_SECRET, event_id, payload)  # re-signed per try
                return await via.post(path, content=body, headers=headers)

            return call

        async def job() -> None:
            first = ack(await until_acknowledged("inbound", post(client, f"evt-{run_id}-{i}"), stats))
            assert first.status_code == 200, first.text
            tenant.inbound_ids.add(message_id)
            tenant.raw_expected += 1
            if i % 30 == 0:  # the provider did not see our 200 and retries, through the other API
                again = ack(await until_acknowledged("inbound", post(other, f"evt-{run_id}-{i}"), stats))
                figures.expect(
                    again.json() == {"ok": True, "duplicate": True},
                    f"a provider retry (same webhook-id) was answered {again.text}",
                )
            if i % 60 == 7:  # the provider re-delivers the same message under a new webhook-id
                redo = ack(await until_acknowledged("inbound", post(other, f"evt-{run_id}-{i}-re"), stats))
                figures.expect(
                    redo.json() == {"ok": True, "duplicate": False},
                    f"a re-delivery under a new webhook-id was answered {redo.text}",
                )
                tenant.raw_expected += 1

        return job

    def send(j: int) -> Job_:
        tenant = tenants[1 if j % 3 == 2 else 0]
        client, other = clients[j % 2], clients[(j + 1) % 2]
        body = {"integration_id": tenant.integration["id"], "to": f"customer-{j % 15}", "text": f"send {j}"}
        headers = {**tenant.headers, "Idempotency-Key": f"idem-{run_id}-{j}"}

        def post(via: httpx.AsyncClient) -> Callable[[], Awaitable[httpx.Response]]:
            return lambda: via.post("/v1/messages", json=body, headers=headers)

        async def job() -> None:
            if j % 60 == 13:  # the same key through both APIs at once: one message
                both = await asyncio.gather(
                    until_acknowledged("send", post(client), stats),
                    until_acknowledged("send", post(other), stats),
                )
                answers = [ack(r).json() for r in both]
                ids = sorted({a["message"]["id"] for a in answers})
                figures.expect(
                    len(ids) == 1 and sorted(a["replayed"] for a in answers) == [False, True],
                    f"one Idempotency-Key sent to both APIs at once created {len(ids)} messages {ids}, "
                    f"replayed={[a['replayed'] for a in answers]}",
                )
                tenant.accepted.update(ids)  # whatever was created is sent and checked below
                return
            first = ack(await until_acknowledged("send", post(client), stats))
            assert first.status_code == 202, first.text
            message = first.json()["message"]
            tenant.accepted.add(message["id"])
            if j % 30 == 0:  # the client retries with the same key: the same message, nothing new
                again = ack(await until_acknowledged("send", post(other), stats)).json()
                figures.expect(
                    again["message"]["id"] == message["id"] and again["replayed"] is True,
                    f"a retry with the same Idempotency-Key answered {again['message']['id']} "
                    f"(replayed={again['replayed']}) instead of {message['id']}",
                )
                tenant.accepted.add(again["message"]["id"])

        return job

    jobs = [inbound(i) for i in range(INBOUND)] + [send(j) for j in range(SENDS)]
    random.Random(20240611).shuffle(jobs)
    return jobs


async def _drive(jobs: list[Job_], marks: dict[float, asyncio.Event]) -> None:
    """Start jobs at RATE per second, at most CONCURRENCY at once; set marks as the load passes them."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(job: Job_) -> None:
        try:
            await job()
        finally:
            gate.release()

    t0 = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for n, job in enumerate(jobs):
            wait = t0 + n / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await gate.acquire()
            group.create_task(run(job))
            for fraction, event in marks.items():
                if (n + 1) / len(jobs) >= fraction:
                    event.set()


def _leased_by(pid: int) -> Any:
    return Job.leased_by.like(f"%:{pid}:%")  # worker ids are host:pid:random


async def _chaos(
    chaos: Chaos,
    marks: dict[float, asyncio.Event],
    sessions: async_sessionmaker[AsyncSession],
    rabbit: RabbitMQServer,
) -> None:
    await marks[KILL_AT].wait()
    # Kill the victim while it holds sends in flight (bounded wait; it gets half the work).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        async with sessions() as session:
            running = (
                await session.execute(
                    select(Job.id).where(
                        Job.kind == "send", Job.status == "running", _leased_by(chaos.victim.pid)
                    )
                )
            ).all()
        if len(running) >= 2:
            break
        await asyncio.sleep(0.05)
    chaos.victim.sigkill()
    chaos.killed_at = time.monotonic()
    await asyncio.sleep(1.0)  # PostgreSQL rolls back the dead worker's open transactions
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Job.id, Job.kind, Job.subject_id).where(
                    Job.status == "running", _leased_by(chaos.victim.pid)
                )
            )
        ).all()
    chaos.in_flight = [(r[0], r[1], r[2]) for r in rows]
    assert any(kind == "send" for _, kind, _ in chaos.in_flight), (
        "the killed worker held no send job: the crash did not hit the send path"
    )

    await marks[RESTART_AT].wait()
    began = time.monotonic()
    await asyncio.to_thread(rabbit.restart)  # ~6 s; the load keeps running meanwhile
    chaos.restart_window = (began, time.monotonic())


async def _wait_for_consumers(rabbit: RabbitMQServer, workers: list[Proc], *, expected: int) -> None:
    """Until every worker consumes `inbound` and `send` (one consumer per topic per process)."""
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline:
        for worker in workers:
            assert worker.alive(), f"{worker.name} exited early:\n{worker.tail()}"
        seen = await asyncio.to_thread(rabbit.ctl, "list_queues", "-q", "name", "consumers")
        consumers = {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+(\d+)\s*$", seen, re.MULTILINE)}
        if all(consumers.get(f"chatgate.{topic}", 0) >= expected for topic in ("inbound", "send")):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"workers did not start consuming within 60 s: {seen}")


# --------------------------------------------------------------------------- settle and verify


async def _settle(
    sessions: async_sessionmaker[AsyncSession],
    tenants: list[Tenant],
    site: Site,
    chaos: Chaos,
    rabbit: RabbitMQServer,
    workers: list[Proc],
    figures: Figures,
) -> float:
    """Wait until no job is open and every send reached the site; returns seconds from the kill
    until the killed worker's last leased job was finished by someone else (-1: never).
    Not settling is recorded as a problem, and the checks still run, to report everything."""
    in_flight_ids = [job_id for job_id, _, _ in chaos.in_flight]
    accepted = set().union(*(t.accepted for t in tenants))
    deadline = max(chaos.killed_at + LEASE_SECONDS + 60, time.monotonic() + 60)
    takeover = -1.0
    last_report = 0.0
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with sessions() as session:
            open_jobs = Counter(
                (
                    await session.execute(
                        select(Job.kind, Job.status).where(Job.status.in_(("pending", "running")))
                    )
                ).all()
            )
            orphans_open = (
                await session.execute(select(Job.id).where(Job.id.in_(in_flight_ids), Job.status != "done"))
            ).all()
        if takeover < 0 and not orphans_open:
            takeover = time.monotonic() - chaos.killed_at
        missing = len(accepted - set(site.received))
        state = {
            "open_jobs": dict(open_jobs),
            "sends_not_at_site": missing,
            "orphans_open": len(orphans_open),
        }
        if not open_jobs and not missing and takeover >= 0:
            return takeover
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            queues = await asyncio.to_thread(rabbit.ctl, "list_queues", "-q", "name", "messages", "consumers")
            shown = " ".join(
                re.sub(r"\s+", "=", q.strip(), count=1) for q in queues.splitlines() if "chatgate." in q
            )
            print(
                f"settling ({time.monotonic() - chaos.killed_at:.0f} s after the kill): {state}; queues: {shown}"
            )
        await asyncio.sleep(0.5)
    worker_logs = {w.name: _log_summary(w) for w in workers}
    figures.problems.append(f"the deployment did not settle in time: {state}; worker logs: {worker_logs}")
    return takeover


async def _verify(
    sessions: async_sessionmaker[AsyncSession],
    tenants: list[Tenant],
    site: Site,
    chaos: Chaos,
    figures: Figures,
    workers: list[Proc],
) -> None:
    expect = figures.expect
    async with sessions() as session:
        events = list(
            (await session.execute(select(Event).order_by(Event.tenant_id, Event.sequence))).scalars()
        )
        messages = list((await session.execute(select(Message))).scalars())
        jobs = list((await session.execute(select(Job))).scalars())
        raws = list((await session.execute(select(RawEvent))).scalars())
        counters = {
            row.tenant_id: row.last_sequence
            for row in (await session.execute(select(TenantSequence))).scalars()
        }
        integrations = {row.id: row for row in (await session.execute(select(Integration))).scalars()}

    by_tenant: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_tenant[event.tenant_id].append(event)

    total_received = 0
    for tenant in tenants:
        name = tenant.slug
        mine = by_tenant[tenant.id]
        # Sequences: 1..N without gaps or repeats, and the counter agrees.
        sequences = [e.sequence for e in mine]
        expect(sequences == list(range(1, len(mine) + 1)), f"{name}: event sequences have gaps or repeats")
        expect(counters.get(tenant.id, 0) == len(mine), f"{name}: tenant_sequences disagrees with the log")

        # Inbound: one message row and one message.received event per acknowledged message id.
        received = Counter(e.data["provider_ids"]["message_id"] for e in mine if e.type == "message.received")
        expect(
            set(received) == tenant.inbound_ids,
            f"{name}: {len(tenant.inbound_ids - set(received))} acknowledged webhooks without message.received, "
            f"{len(set(received) - tenant.inbound_ids)} unexpected",
        )
        repeated = {k: v for k, v in received.items() if v > 1}
        expect(not repeated, f"{name}: message.received more than once: {repeated}")
        inbound_rows = Counter(
            m.provider_message_id for m in messages if m.tenant_id == tenant.id and m.direction == "inbound"
        )
        expect(
            set(inbound_rows) == tenant.inbound_ids, f"{name}: inbound message rows differ from acknowledged"
        )
        repeated = {k: v for k, v in inbound_rows.items() if v > 1}
        expect(not repeated, f"{name}: inbound message stored more than once: {repeated}")
        total_received += len(received)

        # Raw events: one per distinct webhook-id, all processed (re-deliveries are "ignored").
        my_raws = [r for r in raws if r.tenant_id == tenant.id]
        expect(
            len(my_raws) == tenant.raw_expected,
            f"{name}: {len(my_raws)} raw events, {tenant.raw_expected} expected",
        )
        raw_statuses = Counter(r.status for r in my_raws)
        expect(
            raw_statuses.keys() <= {"processed", "ignored"},
            f"{name}: raw event statuses {dict(raw_statuses)}",
        )

        # Outbound: every accepted send is one message, `sent`, with one `sent` status event.
        outbound = {m.id: m for m in messages if m.tenant_id == tenant.id and m.direction == "outbound"}
        expect(set(outbound) == tenant.accepted, f"{name}: outbound rows differ from accepted sends")
        statuses = Counter(m.status for m in outbound.values())
        expect(statuses == {"sent": len(tenant.accepted)}, f"{name}: outbound statuses {dict(statuses)}")
        sent_events = Counter(
            e.data["message_id"] for e in mine if e.type == "message.status" and e.data["status"] == "sent"
        )
        expect(set(sent_events) == tenant.accepted, f"{name}: `sent` events differ from accepted sends")
        expect(set(sent_events.values()) <= {1}, f"{name}: a `sent` event repeated")

        # No duplicated effect elsewhere in the log either.
        for kind in ("conversation.created", "contact.updated"):
            subjects = Counter(e.data["id"] for e in mine if e.type == kind)
            expect(set(subjects.values()) <= {1}, f"{name}: {kind} repeated: {subjects.most_common(3)}")
        keys = [e.dedupe_key for e in mine if e.dedupe_key]
        expect(len(keys) == len(set(keys)), f"{name}: repeated dedupe keys")

        integration = integrations[tenant.integration["id"]]
        expect(
            integration.messages_received == len(tenant.inbound_ids),
            f"{name}: messages_received counter {integration.messages_received} != {len(tenant.inbound_ids)}",
        )
        expect(
            integration.messages_sent == len(tenant.accepted),
            f"{name}: messages_sent counter {integration.messages_sent} != {len(tenant.accepted)}",
        )

    # Jobs: nothing left open or dead.
    job_states = Counter((j.kind, j.status) for j in jobs)
    expect({status for _, status in job_states} == {"done"}, f"jobs not all done: {dict(job_states)}")
    figures.put("jobs_retried", dict(Counter(j.kind for j in jobs if j.attempts > 1)))

    # Takeover: the killed worker's leased jobs were finished by the surviving worker.
    by_id = {j.id: j for j in jobs}
    survivor_tag = f":{chaos.survivor.pid}:"
    not_taken_over = [
        f"{kind} {job_id} {by_id[job_id].status} by {by_id[job_id].leased_by}"
        for job_id, kind, _ in chaos.in_flight
        if not (
            by_id[job_id].status == "done"
            and survivor_tag in (by_id[job_id].leased_by or "")
            and by_id[job_id].attempts >= 2
        )
    ]
    expect(
        not not_taken_over,
        f"{len(not_taken_over)} of the killed worker's {len(chaos.in_flight)} leased jobs were not "
        f"finished by the survivor, e.g. {not_taken_over[:3]}",
    )
    figures.put("jobs_finished_by_survivor", sum(1 for j in jobs if survivor_tag in (j.leased_by or "")))
    figures.put(
        "jobs_finished_by_victim_before_kill",
        sum(1 for j in jobs if f":{chaos.victim.pid}:" in (j.leased_by or "")),
    )

    # The site: every accepted send at least once; a repeat only for the killed worker's in-flight sends.
    accepted = set().union(*(t.accepted for t in tenants))
    expect(
        accepted <= set(site.received), f"{len(accepted - set(site.received))} sends never reached the site"
    )
    expect(set(site.received) <= accepted, "the site got a message nobody sent")
    duplicates = site.duplicates
    in_flight_sends = {subject for _, kind, subject in chaos.in_flight if kind == "send"}
    crash_window = {m: n for m, n in duplicates.items() if m in in_flight_sends}
    outside = {m: n for m, n in duplicates.items() if m not in in_flight_sends}
    crashed = _crashed_send_jobs(workers)  # send jobs whose handler raised (logged "crashed")
    crashed_subjects = {by_id[j].subject_id: reason for j, reason in crashed.items() if j in by_id}
    figures.put("inbound_acknowledged", sum(len(t.inbound_ids) for t in tenants))
    figures.put("message_received_events", total_received)
    figures.put("sends_accepted", len(accepted))
    figures.put("events_total", len(events))
    figures.put("jobs_by_kind", dict(Counter(j.kind for j in jobs)))
    figures.put("site_deliveries", sum(site.received.values()))
    figures.put("killed_worker_in_flight_sends", len(in_flight_sends))
    figures.put("duplicate_deliveries", sum(n - 1 for n in duplicates.values()))
    figures.put("duplicate_deliveries_in_crash_window", sum(n - 1 for n in crash_window.values()))
    figures.put("duplicate_deliveries_outside_crash_window", sum(n - 1 for n in outside.values()))
    figures.put("send_jobs_crashed_in_workers", dict(Counter(crashed.values())))
    expect(
        not outside,
        f"{len(outside)} sends delivered twice although no worker died holding them; "
        f"{sum(1 for m in outside if m in crashed_subjects)} of them had a send job crash "
        f"({dict(Counter(crashed_subjects.get(m, 'no crash logged') for m in outside))})",
    )
    expect(all(n <= 2 for n in crash_window.values()), f"delivered more than twice: {crash_window}")


_CRASH = re.compile(r"send job (job_\w+) crashed")
_CAUSE = re.compile(r"^(?:sqlalchemy\.exc\.\w+|asyncpg\.exceptions\.\w+|\w+Error): (.{0,60})")


def _crashed_send_jobs(workers: list[Proc]) -> dict[str, str]:
    """Send job id -> the first line of its error, from the workers' logs ("send job X crashed")."""
    crashed: dict[str, str] = {}
    for worker in workers:
        job: str | None = None
        for line in worker.output().splitlines():
            found = _CRASH.search(line)
            if found:
                job = found.group(1)
                crashed[job] = "unknown"
                continue
            cause = _CAUSE.match(line)
            if job is not None and cause:
                crashed[job] = cause.group(1).strip()
                job = None
    return crashed


def _log_summary(proc: Proc) -> dict[str, int]:
    levels: Counter[str] = Counter()
    for line in proc.output().splitlines():
        for level in ("WARNING", "ERROR", "CRITICAL", "Traceback", "DeadlockDetectedError:"):
            if level in line:
                levels[level] += 1
    return dict(levels)
