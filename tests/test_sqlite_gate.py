"""The in-process SQLite write gate and the short-lived secret cache."""

from __future__ import annotations

import asyncio

from chatgate.services.secret_cache import SecretCache
from chatgate.store.sqlite_gate import SqliteWriteGate


async def test_writers_take_turns() -> None:
    gate = SqliteWriteGate()
    inside: list[str] = []
    overlaps: list[str] = []

    async def writer(name: str) -> None:
        async with gate.held_async():
            assert gate.held_here()
            if inside:
                overlaps.append(name)
            inside.append(name)
            await asyncio.sleep(0.005)
            inside.remove(name)

    await asyncio.gather(*(writer(f"w{i}") for i in range(10)))
    assert overlaps == []
    assert not gate.held_here()


async def test_a_cancelled_waiter_does_not_keep_the_gate() -> None:
    gate = SqliteWriteGate()
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.held_async():
            await release.wait()

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(gate.held_async().__aenter__())
    await asyncio.sleep(0.01)
    waiting.cancel()
    release.set()
    await holding
    async with asyncio.timeout(2):
        async with gate.held_async():
            pass


async def test_a_waiter_cancelled_just_as_its_turn_came_passes_the_gate_on() -> None:
    gate = SqliteWriteGate()
    release = asyncio.Event()
    entered: list[str] = []

    async def holder() -> None:
        async with gate.held_async():
            await release.wait()
        handed.cancel()  # the gate was just handed on; `handed` has not run since

    async def next_in_line() -> None:
        async with gate.held_async():
            entered.append("next")

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    handed = asyncio.create_task(next_in_line())
    await asyncio.sleep(0.01)
    release.set()
    await holding
    async with asyncio.timeout(2):
        async with gate.held_async():
            entered.append("after")
    assert entered == ["after"]


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


async def test_writers_go_in_arrival_order() -> None:
    gate = SqliteWriteGate()
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with gate.held_async():
            order.append("first")
            await release.wait()

    async def writer(name: str) -> None:
        async with gate.held_async():
            order.append(name)

    holding = asyncio.create_task(first())
    await asyncio.sleep(0.01)
    queued = []
    for name in ("a", "b", "c"):
        queued.append(asyncio.create_task(writer(name)))
        await asyncio.sleep(0.005)
    release.set()
    # A newcomer arriving as the gate is released must not barge ahead of those waiting.
    newcomer = asyncio.create_task(writer("newcomer"))
    await asyncio.gather(holding, newcomer, *queued)
    assert order == ["first", "a", "b", "c", "newcomer"]


async def test_urgent_writers_go_first_but_never_twice_in_a_row_while_others_wait() -> None:
    gate = SqliteWriteGate()
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with gate.held_async():
            order.append("first")
            await release.wait()

    async def writer(name: str, *, urgent: bool = False) -> None:
        async with gate.held_async(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0)

    holding = asyncio.create_task(first())
    await asyncio.sleep(0.01)
    queued = []
    for name, urgent in (("a", False), ("b", False), ("i1", True), ("i2", True), ("i3", True)):
        queued.append(asyncio.create_task(writer(name, urgent=urgent)))
        await asyncio.sleep(0.005)
    release.set()
    await asyncio.gather(holding, *queued)
    # i1 jumps the line; then the others alternate with the remaining urgent ones.
    assert order == ["first", "i1", "a", "i2", "b", "i3"]
