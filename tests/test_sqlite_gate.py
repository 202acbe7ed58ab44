"""The in-process SQLite write gate and the short-lived secret cache."""

from __future__ import annotations

import asyncio
import threading
import time

from chatgate.services.secret_cache import SecretCache
from chatgate.store.sqlite_gate import SqliteWriteGate


async def test_writers_take_turns_and_a_thread_waits_for_the_loop() -> None:
    gate = SqliteWriteGate()
    inside: list[str] = []
    overlaps: list[str] = []

    async def writer(name: str) -> None:
        async with gate.held_async():
            if inside:
                overlaps.append(name)
            inside.append(name)
            await asyncio.sleep(0.01)
            inside.remove(name)

    def thread_writer() -> None:
        with gate.held():
            if inside:
                overlaps.append("thread")
            inside.append("thread")
            time.sleep(0.01)
            inside.remove("thread")

    try:
        thread = threading.Thread(target=thread_writer)
        await asyncio.gather(*(writer(f"w{i}") for i in range(10)), asyncio.to_thread(thread.run))
    finally:
        gate.close()
    assert overlaps == []


async def test_a_cancelled_waiter_does_not_keep_the_gate() -> None:
    gate = SqliteWriteGate()
    try:
        release = asyncio.Event()

        async def holder() -> None:
            async with gate.held_async():
                await release.wait()

        holding = asyncio.create_task(holder())
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(gate.held_async().__aenter__())
        await asyncio.sleep(0.05)
        waiter.cancel()
        release.set()
        await holding
        # The cancelled waiter's helper thread got the gate after the holder and handed it back.
        async with asyncio.timeout(2):
            async with gate.held_async():
                pass
    finally:
        gate.close()


def test_secret_cache_expires_and_stays_bounded() -> None:
    now = [100.0]
    cache = SecretCache(60, max_entries=2, clock=lambda: now[0])
    cache.put(("e1", "sealed-a"), "secret-a")
    assert cache.get(("e1", "sealed-a")) == "secret-a"
    assert cache.get(("e1", "sealed-b")) is None  # a rotated secret is another key
    now[0] += 61
    assert cache.get(("e1", "sealed-a")) is None
    for i in range(5):
        cache.put(("e", i), f"s{i}")
    assert cache.get(("e", 0)) is None
    assert cache.get(("e", 4)) == "s4"


async def test_writers_go_in_arrival_order_so_the_ingest_thread_is_not_starved() -> None:
    gate = SqliteWriteGate()
    order: list[str] = []
    try:
        release = asyncio.Event()

        async def first() -> None:
            async with gate.held_async():
                order.append("first")
                await release.wait()

        def ingest_thread() -> None:
            with gate.held():
                order.append("thread")

        async def later_writer() -> None:
            async with gate.held_async():
                order.append("later")

        holding = asyncio.create_task(first())
        await asyncio.sleep(0.01)
        thread = threading.Thread(target=ingest_thread)
        thread.start()
        await asyncio.sleep(0.05)  # the thread now waits for its turn
        later = asyncio.create_task(later_writer())
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(holding, later)
        await asyncio.to_thread(thread.join)
    finally:
        gate.close()
    assert order == ["first", "thread", "later"]
