"""`WorkQueue` on RabbitMQ (the scaled mode), through aio-pika's robust connection.

Layout: one durable queue per topic, `{prefix}.{topic}`, fed through the default exchange
with persistent messages. One channel publishes, with publisher confirms; every `consume`
call opens its own channel (the prefetch limit applies per channel, and one consumer's
channel error does not take the others down).

Reconnects: `connect_robust` reconnects after a broker restart or a dropped connection, then
re-declares the queues and re-registers the consumers on its own; `consume` keeps running
throughout. Deliveries buffered but not yet handed over when the connection dropped are
skipped: their channel is gone, so they could not be acknowledged, and the broker delivers
them again.

Publishing is best effort and bounded in time: while the connection is down a publish is
dropped at once with a warning (aio-pika would otherwise wait for the reconnect), and a
publish that is not confirmed within `publish_timeout` is given up. The database sweeper
re-dispatches whatever was lost.

`consume` hands deliveries to the handler one at a time and acknowledges each as soon as the
handler returns, so the handler must return quickly (buffer the item, work elsewhere); at
most `prefetch` deliveries per consumer wait unacknowledged in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Protocol

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from yarl import URL

from chatgate.domain.errors import ServiceUnavailable
from chatgate.workers.queue import TOPICS, Handler, QueueItem

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 5.0
_PUBLISH_CHUNK = 500


class RabbitMQQueue:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "chatgate",
        prefetch: int = 1000,
        connect_timeout: float = 10.0,
        publish_timeout: float = 5.0,
        reconnect_interval: float = 2.0,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._prefetch = prefetch
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None  # the publishing channel
        self._declared: set[str] = set()  # topics declared on the publishing channel
        self._buffers: set[asyncio.Queue[AbstractIncomingMessage | None]] = set()
        self._closed = False

    @property
    def address(self) -> str:
        """`host:port` of the broker, for messages (never the credentials)."""
        url = URL(self._url)
        port = url.port or (5671 if url.scheme == "amqps" else 5672)
        return f"{url.host}:{port}"

    def queue_name(self, topic: str) -> str:
        return f"{self._prefix}.{topic}"

    def _scrub(self, text: str) -> str:
        url = URL(self._url)
        for secret in (url.raw_password, url.password):  # as written and decoded
            if secret:
                text = text.replace(secret, "******")
        return text

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._connection is not None:
            return
        self._closed = False
        connection: AbstractRobustConnection | None = None
        try:
            # aiormq applies `timeout` to each attempt; the outer bound also covers declaring
            async with asyncio.timeout(self._connect_timeout + 1):
                connection = await aio_pika.connect_robust(
                    self._url,
                    timeout=self._connect_timeout,
                    reconnect_interval=self._reconnect_interval,
                    client_properties={"connection_name": f"chatgate {self._prefix}"},
                )
                channel = await connection.channel(publisher_confirms=True)
                for topic in TOPICS:
                    await self._declare(channel, topic)
        except Exception as exc:  # noqa: BLE001 - any failure here means "broker unavailable"
            if connection is not None:
                await _close_quietly(connection)
            reason = self._scrub(str(exc) or type(exc).__name__)
            # `from None`: the library's exception text may carry the URL with its password
            raise ServiceUnavailable(
                f"cannot connect to RabbitMQ at {self.address} within {self._connect_timeout:g}s: {reason}"
            ) from None
        self._connection, self._channel = connection, channel
        log.info("connected to RabbitMQ at %s (queues %s.*)", self.address, self._prefix)

    async def check(self) -> None:
        if not self._connected():
            raise ServiceUnavailable(f"RabbitMQ at {self.address} is not connected")

    async def aclose(self) -> None:
        self._closed = True
        for buffer in self._buffers:
            buffer.put_nowait(None)  # wake the consumers so they see the flag
        connection, self._connection, self._channel = self._connection, None, None
        self._declared.clear()
        if connection is not None:
            await _close_quietly(connection)

    def _connected(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    async def _declare(self, channel: AbstractRobustChannel, topic: str) -> None:
        # a robust channel re-declares its queues after a reconnect, so once per channel is enough
        await channel.declare_queue(self.queue_name(topic), durable=True)
        self._declared.add(topic)

    # ------------------------------------------------------------------ publish

    async def publish(self, topic: str, items: Sequence[QueueItem]) -> None:
        if not items:
            return
        channel = self._channel
        lost, reason = 0, ""
        # chunks bound the time one confirm round may take, whatever the batch size
        for start in range(0, len(items), _PUBLISH_CHUNK):
            if channel is None or not self._connected():
                # aio-pika would wait for the reconnect; drop now, the sweeper re-dispatches
                lost, reason = lost + len(items) - start, f"RabbitMQ at {self.address} not connected"
                break
            chunk = items[start : start + _PUBLISH_CHUNK]
            try:
                async with asyncio.timeout(self._publish_timeout):
                    results = await self._publish_chunk(channel, topic, chunk)
            except Exception as exc:  # noqa: BLE001 - publish is best effort and must never raise
                lost, reason = lost + len(items) - start, self._describe(exc)
                break  # the broker is not answering: do not wait again for the rest
            # with confirms on, success is a Basic.Ack; an exception or a returned message is not
            failures = [r for r in results if not isinstance(r, aiormq.spec.Basic.Ack)]
            if failures:
                lost, reason = lost + len(failures), reason or self._describe(failures[0])
        if lost:
            log.warning("%d of %d item(s) for topic %s not queued: %s", lost, len(items), topic, reason)

    async def _publish_chunk(
        self, channel: AbstractRobustChannel, topic: str, chunk: Sequence[QueueItem]
    ) -> list[object]:
        await channel.ready()  # its restore may still run right after a reconnect
        if topic not in self._declared:
            await self._declare(channel, topic)
        exchange = channel.default_exchange
        routing_key = self.queue_name(topic)
        # concurrently, so the confirms of a chunk arrive in one round trip
        return await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(item.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=routing_key,
                )
                for item in chunk
            ),
            return_exceptions=True,
        )

    def _describe(self, failure: object) -> str:
        if isinstance(failure, TimeoutError):
            return f"no confirm within {self._publish_timeout:g}s"
        if isinstance(failure, BaseException):
            return self._scrub(repr(failure))
        return f"returned by the broker ({type(failure).__name__})"  # unroutable

    # ------------------------------------------------------------------ consume

    async def consume(self, topic: str, handler: Handler) -> None:
        if self._connection is None:
            raise ServiceUnavailable("the RabbitMQ work queue is not started")
        buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._buffers.add(buffer)
        channel: AbstractRobustChannel | None = None
        try:
            channel = await self._open_consumer(topic, buffer)
            while not self._closed:
                message = await buffer.get()
                if message is None or self._closed:
                    return
                await self._hand_over(topic, message, handler)
        finally:
            self._buffers.discard(buffer)
            if channel is not None and not channel.is_closed:
                # closing the channel returns any unacknowledged deliveries to the queue
                await _close_quietly(channel)

    async def _open_consumer(
        self, topic: str, buffer: asyncio.Queue[AbstractIncomingMessage | None]
    ) -> AbstractRobustChannel | None:
        """Register a consumer that buffers deliveries; retry until it works or we close."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            buffer.put_nowait(message)

        while not self._closed and self._connection is not None:
            channel: AbstractRobustChannel | None = None
            try:
                async with asyncio.timeout(self._connect_timeout):
                    channel = await self._connection.channel(publisher_confirms=False)
                    await channel.set_qos(prefetch_count=self._prefetch)
                    queue = await channel.declare_queue(self.queue_name(topic), durable=True)
                    # the robust queue re-registers this consumer after every reconnect
                    await queue.consume(on_message)
                return channel
            except Exception as exc:  # noqa: BLE001 - keep retrying; the broker may come back
                log.warning(
                    "cannot consume topic %s from RabbitMQ at %s (%s); retrying in %gs",
                    topic,
                    self.address,
                    self._scrub(repr(exc)),
                    self._reconnect_interval,
                )
                if channel is not None:
                    await _close_quietly(channel)
            await asyncio.sleep(self._reconnect_interval)
        return None

    async def _hand_over(self, topic: str, message: AbstractIncomingMessage, handler: Handler) -> None:
        if _channel_gone(message):
            return  # delivered before a reconnect: cannot be acked, the broker redelivers it
        try:
            item = QueueItem.decode(message.body)
        except ValueError as exc:  # includes UnicodeDecodeError
            log.warning("dropping malformed message on topic %s: %s", topic, exc)
        else:
            try:
                await handler(item)
            except Exception:
                # acked anyway: the job row tracks progress and the sweeper retries it
                log.exception("queue handler failed for topic %s, job %s", topic, item.job_id)
        try:
            await message.ack()
        except Exception as exc:  # noqa: BLE001 - a lost ack only means a redelivery
            # the channel died meanwhile; the redelivery is harmless (jobs are claimed in the DB)
            log.debug("could not ack a delivery on topic %s: %r", topic, exc)


class _Closable(Protocol):
    def close(self) -> Awaitable[None]: ...


async def _close_quietly(resource: _Closable) -> None:
    try:
        await asyncio.wait_for(resource.close(), _CLOSE_TIMEOUT)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        # aiormq reports closing a channel of an already closed connection as a cancellation
    except Exception as exc:  # noqa: BLE001 - closing is best effort; the broker cleans up
        log.debug("closing %r failed: %r", resource, exc)


def _channel_gone(message: AbstractIncomingMessage) -> bool:
    try:
        _ = message.channel  # raises once the delivering channel is closed
    except aiormq.exceptions.ChannelInvalidStateError:
        return True
    return False
