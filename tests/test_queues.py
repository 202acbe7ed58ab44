"""Work queues: one behaviour for the in-process queue and RabbitMQ, then RabbitMQ's own
promises (durability, reconnect after a broker restart, outages, competing consumers).

Every RabbitMQ queue object here uses a unique `prefix`, so tests never see each other's
messages on the shared session broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from chatgate.domain.errors import ServiceUnavailable
from chatgate.workers.queue import QueueItem, WorkQueue
from chatgate.workers.queue_memory import InProcessQueue
from chatgate.workers.queue_rabbitmq import RabbitMQQueue
from tests.conftest import unique
from tests.servers import RabbitMQServer

QueueFactory = Callable[..., Awaitable[WorkQueue]]


def items(n: int, tag: str = "j") -> list[QueueItem]:
    return [QueueItem(f"{tag}{i}", f"tenant{i % 3}") for i in range(n)]


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class Collector:
    """A handler that records what it gets; `fail_on` items make it raise instead."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.items: list[QueueItem] = []
        self.failed: list[QueueItem] = []
        self._fail_on = fail_on or set()

    async def __call__(self, item: QueueItem) -> None:
        if item.job_id in self._fail_on:
            self.failed.append(item)
            raise RuntimeError(f"handler refuses {item.job_id}")
        self.items.append(item)

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        await eventually(lambda: len(self.items) >= n, timeout, f"{n} items (have {len(self.items)})")


@contextlib.asynccontextmanager
async def consuming(
    queue: WorkQueue, topic: str, handler: Callable[[QueueItem], Awaitable[None]]
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(queue.consume(topic, handler))
    try:
        yield task
    finally:
        assert not task.done() or task.cancelled() or task.exception() is None, task.exception()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def rabbit(rabbitmq_server: RabbitMQServer) -> RabbitMQServer:
    # no-op when running; brings the broker back if an earlier test left it stopped
    rabbitmq_server.start()
    return rabbitmq_server


@pytest.fixture(params=["memory", "rabbitmq"])
async def make_queue(request: pytest.FixtureRequest) -> AsyncIterator[QueueFactory]:
    """Build started queues of one kind; `prefix` (RabbitMQ) defaults to one unique per test."""
    created: list[WorkQueue] = []
    default_prefix = unique("cgtest")

    async def factory(**kwargs: Any) -> WorkQueue:
        queue: WorkQueue
        if request.param == "memory":
            queue = InProcessQueue()
        else:
            server: RabbitMQServer = request.getfixturevalue("rabbit")
            kwargs.setdefault("prefix", default_prefix)
            queue = RabbitMQQueue(server.url, **kwargs)
        await queue.start()
        created.append(queue)
        return queue

    yield factory
    for queue in created:
        await queue.aclose()


@pytest.fixture
async def queue(make_queue: QueueFactory) -> WorkQueue:
    return await make_queue()


@pytest.fixture
async def make_rabbit(rabbit: RabbitMQServer) -> AsyncIterator[Callable[..., Awaitable[RabbitMQQueue]]]:
    created: list[RabbitMQQueue] = []

    async def factory(prefix: str, **kwargs: Any) -> RabbitMQQueue:
        queue = RabbitMQQueue(rabbit.url, prefix=prefix, **kwargs)
        await queue.start()
        created.append(queue)
        return queue

    yield factory
    for queue in created:
        await queue.aclose()


# --------------------------------------------------------------------------- QueueItem


def test_queue_item_round_trip() -> None:
    for item in [QueueItem("01J0ABC", "t1"), QueueItem("job", "tenant|with|bars"), QueueItem("ü", "t")]:
        assert QueueItem.decode(item.encode()) == item


@pytest.mark.parametrize("body", [b"", b"job-only", b"|tenant", b"job|", b"|", b"\xff\xfe|t"])
def test_queue_item_rejects_malformed_bodies(body: bytes) -> None:
    with pytest.raises(ValueError):  # UnicodeDecodeError is a ValueError too
        QueueItem.decode(body)


# --------------------------------------------------------------------------- both kinds


async def test_consumer_receives_exactly_the_published_items(queue: WorkQueue) -> None:
    sent = items(300)
    await queue.publish("inbound", sent[:100])
    got = Collector()
    async with consuming(queue, "inbound", got):
        await queue.publish("inbound", sent[100:])
        await got.wait_for(300)
        await asyncio.sleep(0.2)  # room for a wrong extra delivery to show up
    assert sorted(got.items, key=lambda i: i.job_id) == sorted(sent, key=lambda i: i.job_id)


async def test_publishing_nothing_is_fine(queue: WorkQueue) -> None:
    await queue.publish("send", [])
    await queue.check()


async def test_topics_are_independent(queue: WorkQueue) -> None:
    inbound, send = Collector(), Collector()
    await queue.publish("inbound", items(20, "in"))
    await queue.publish("send", items(30, "send"))
    async with consuming(queue, "inbound", inbound), consuming(queue, "send", send):
        await inbound.wait_for(20)
        await send.wait_for(30)
        await asyncio.sleep(0.2)
    assert {i.job_id for i in inbound.items} == {f"in{n}" for n in range(20)}
    assert {i.job_id for i in send.items} == {f"send{n}" for n in range(30)}
    assert len(inbound.items) == 20
    assert len(send.items) == 30


async def test_failing_handler_does_not_stop_consumption(
    queue: WorkQueue, caplog: pytest.LogCaptureFixture
) -> None:
    sent = items(20)
    handler = Collector(fail_on={f"j{n}" for n in range(0, 20, 2)})
    with caplog.at_level(logging.ERROR):
        async with consuming(queue, "deliver", handler) as task:
            await queue.publish("deliver", sent)
            await handler.wait_for(10)
            await eventually(lambda: len(handler.failed) == 10, what="failed items")
            assert not task.done()
            await queue.publish("deliver", [QueueItem("later", "t")])
            await handler.wait_for(11)
    assert "later" in {i.job_id for i in handler.items}
    assert "handler failed" in caplog.text


async def test_two_consumers_in_one_process_share_a_topic(queue: WorkQueue) -> None:
    a, b = Collector(), Collector()
    async with consuming(queue, "send", a), consuming(queue, "send", b):
        await asyncio.sleep(0.3)  # both registered before the items arrive
        await queue.publish("send", items(200))
        await eventually(lambda: len(a.items) + len(b.items) >= 200, what="200 items")
        await asyncio.sleep(0.2)
    assert sorted(i.job_id for i in a.items + b.items) == sorted(f"j{n}" for n in range(200))


async def test_consume_returns_after_aclose(make_queue: QueueFactory) -> None:
    queue = await make_queue()
    task = asyncio.create_task(queue.consume("inbound", Collector()))
    await asyncio.sleep(0.2)
    await queue.aclose()
    await asyncio.wait_for(task, 5)
    with pytest.raises(ServiceUnavailable):
        await queue.check()


# --------------------------------------------------------------------------- RabbitMQ only


async def _consumer_count(url: str, queue_name: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        return queue.declaration_result.consumer_count or 0


async def test_rabbitmq_keeps_messages_until_a_consumer_comes(
    make_rabbit: Callable[..., Awaitable[RabbitMQQueue]],
) -> None:
    prefix = unique("cgdur")
    producer = await make_rabbit(prefix)
    await producer.publish("inbound", items(50))
    await producer.aclose()  # a producer that is gone, like another process

    consumer = await make_rabbit(prefix)
    got = Collector()
    async with consuming(consumer, "inbound", got):
        await got.wait_for(50)
    assert sorted(i.job_id for i in got.items) == sorted(f"j{n}" for n in range(50))


async def test_rabbitmq_acks_and_logs_malformed_messages(
    rabbit: RabbitMQServer,
    make_rabbit: Callable[..., Awaitable[RabbitMQQueue]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await make_rabbit(unique("cgbad"))
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()
        for body in (b"garbage", b"\xff\xfe"):
            await channel.default_exchange.publish(
                aio_pika.Message(body), routing_key=queue.queue_name("send")
            )
    await queue.publish("send", [QueueItem("good", "t")])
    got = Collector()
    with caplog.at_level(logging.WARNING):
        async with consuming(queue, "send", got):
            await got.wait_for(1)
            await eventually(lambda: caplog.text.count("malformed") == 2, what="two malformed warnings")
    assert [i.job_id for i in got.items] == ["good"]
    # acked, not requeued: nothing is left behind
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()
        left = await channel.declare_queue(queue.queue_name("send"), passive=True)
        assert left.declaration_result.message_count == 0


class StuckOnce(Collector):
    """Blocks in its first call until released, so later deliveries pile up in the buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, item: QueueItem) -> None:
        if not self.entered.is_set():
            self.entered.set()
            await self.release.wait()
        self.items.append(item)


def job_ids(collector: Collector) -> set[str]:
    return {i.job_id for i in collector.items}


async def test_rabbitmq_survives_a_broker_restart(
    rabbit: RabbitMQServer, make_rabbit: Callable[..., Awaitable[RabbitMQQueue]]
) -> None:
    queue = await make_rabbit(unique("cgrst"), reconnect_interval=0.5)
    got, stuck = Collector(), StuckOnce()
    before = {f"before{n}" for n in range(10)}
    after = {f"after{n}" for n in range(10)}
    held = {f"held{n}" for n in range(5)}
    async with consuming(queue, "inbound", got) as task, consuming(queue, "deliver", stuck):
        await queue.publish("inbound", items(10, "before"))
        await queue.publish("deliver", items(5, "held"))  # held0 in the handler, the rest buffered
        await queue.publish("send", items(10, "parked"))  # no consumer: must outlive the restart
        await eventually(lambda: job_ids(got) == before, what="items before the restart")
        await eventually(stuck.entered.is_set, what="the stuck handler")

        await asyncio.to_thread(rabbit.restart)  # the loop keeps running meanwhile
        await _until_connected(queue, timeout=30)
        stuck.release.set()

        await queue.publish("inbound", items(10, "after"))
        await eventually(lambda: job_ids(got) == before | after, timeout=30, what="items after the restart")
        await eventually(lambda: job_ids(stuck) == held, timeout=30, what="redelivered held items")
        assert not task.done()
    # held0 was handed over twice (its ack died with the old channel); the buffered ones were
    # skipped as stale and handed over once, by the broker's redelivery
    counts = Counter(i.job_id for i in stuck.items)
    assert all(counts[f"held{n}"] == 1 for n in range(1, 5)), counts

    parked = Collector()
    async with consuming(queue, "send", parked):
        await eventually(lambda: len(parked.items) >= 10, what="parked items")
    assert job_ids(parked) == {f"parked{n}" for n in range(10)}


async def _until_connected(queue: RabbitMQQueue, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await queue.check()
            return
        except ServiceUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_rabbitmq_publish_during_an_outage_does_not_raise(
    rabbit: RabbitMQServer,
    make_rabbit: Callable[..., Awaitable[RabbitMQQueue]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await make_rabbit(unique("cgout"), publish_timeout=2, reconnect_interval=0.5)
    durations: list[float] = []
    stopping = True

    async def keep_publishing() -> None:
        # covers the moment the broker goes away with confirms still in flight
        n = 0
        while stopping:
            t0 = time.monotonic()
            await queue.publish("deliver", items(20, f"p{n}-"))
            durations.append(time.monotonic() - t0)
            n += 1
            await asyncio.sleep(0.05)

    try:
        with caplog.at_level(logging.WARNING):
            publisher = asyncio.create_task(keep_publishing())
            await asyncio.sleep(0.2)
            await asyncio.to_thread(rabbit.stop)
            with pytest.raises(ServiceUnavailable, match=r"127\.0\.0\.1:\d+"):
                await queue.check()
            t0 = time.monotonic()
            await queue.publish("deliver", [QueueItem("lost", "t")])
            assert time.monotonic() - t0 < 0.5  # known down: dropped at once
            stopping = False
            await publisher  # re-raises if any publish raised
        assert max(durations) < 2 + 1  # bounded by publish_timeout
        assert "1 item(s) for topic deliver" in caplog.text
        assert "lost" not in caplog.text  # no message bodies in logs
    finally:
        stopping = False
        await asyncio.to_thread(rabbit.start)

    await _until_connected(queue, timeout=30)
    got = Collector()
    async with consuming(queue, "send", got):
        await queue.publish("send", [QueueItem("back", "t")])
        await got.wait_for(1, timeout=15)


async def test_rabbitmq_consumers_in_two_processes_share_items(
    rabbit: RabbitMQServer, make_rabbit: Callable[..., Awaitable[RabbitMQQueue]]
) -> None:
    prefix = unique("cgshare")
    first, second = await make_rabbit(prefix, prefetch=10), await make_rabbit(prefix, prefetch=10)
    a, b = Collector(), Collector()
    async with consuming(first, "deliver", a), consuming(second, "deliver", b):
        name = first.queue_name("deliver")
        for _ in range(100):
            if await _consumer_count(rabbit.url, name) == 2:
                break
            await asyncio.sleep(0.05)
        await first.publish("deliver", items(1200))  # more than one publish chunk
        await eventually(lambda: len(a.items) + len(b.items) >= 1200, what="1200 items")
        await asyncio.sleep(0.2)
    assert sorted(i.job_id for i in a.items + b.items) == sorted(f"j{n}" for n in range(1200))
    assert a.items
    assert b.items


async def test_rabbitmq_start_fails_clearly_when_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = RabbitMQQueue(f"amqp://guest:s3cr3t-pw@127.0.0.1:{port}/", connect_timeout=2)
    with pytest.raises(ServiceUnavailable) as caught:
        await queue.start()
    assert f"127.0.0.1:{port}" in caught.value.message
    assert "s3cr3t-pw" not in str(caught.value)
    with pytest.raises(ServiceUnavailable):
        await queue.check()
    with pytest.raises(ServiceUnavailable):
        await queue.consume("inbound", Collector())
    await queue.publish("inbound", [QueueItem("j", "t")])  # still never raises


async def test_rabbitmq_start_times_out_on_a_silent_server() -> None:
    # accepts TCP but never speaks AMQP: only the timeout can end the wait
    writers: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _r, w: writers.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        queue = RabbitMQQueue(f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout=1)
        t0 = time.monotonic()
        with pytest.raises(ServiceUnavailable, match=f"127.0.0.1:{port}"):
            await queue.start()
        assert time.monotonic() - t0 < 4
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_rabbitmq_start_fails_on_bad_credentials(rabbit: RabbitMQServer) -> None:
    url = rabbit.url.replace("guest:guest@", "guest:wr0ng-pw@")
    queue = RabbitMQQueue(url, connect_timeout=5)
    with pytest.raises(ServiceUnavailable) as caught:
        await queue.start()
    assert f"127.0.0.1:{rabbit.port}" in caught.value.message
    assert "wr0ng-pw" not in str(caught.value)


async def test_the_in_process_queue_keeps_a_bounded_backlog_for_a_topic_nobody_consumes() -> None:
    """An API process whose workers run elsewhere publishes to no local consumer: it keeps at
    most `max_unconsumed` items (their jobs wait in the database for the sweeper)."""
    queue = InProcessQueue(max_unconsumed=5)
    await queue.start()
    await queue.publish("inbound", [QueueItem(f"job-{i}", "t") for i in range(3)])
    await queue.publish("inbound", [QueueItem(f"job-{i}", "t") for i in range(3, 9)])
    assert queue.dropped == {"inbound": 4}
    received: list[str] = []

    async def handler(item: QueueItem) -> None:
        received.append(item.job_id)

    consumer = asyncio.create_task(queue.consume("inbound", handler))
    try:
        await asyncio.sleep(0.05)
        assert received == [f"job-{i}" for i in range(5)]  # the first five, in order
        # With a consumer, nothing is dropped however many are published.
        await queue.publish("inbound", [QueueItem(f"more-{i}", "t") for i in range(20)])
        await asyncio.sleep(0.05)
        assert len(received) == 25
        assert queue.dropped == {"inbound": 4}
    finally:
        await queue.aclose()
        await asyncio.wait_for(consumer, 5)
