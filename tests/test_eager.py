"""`start_eagerly`: a task whose first step runs in the call that starts it."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

import pytest

from chatgate.workers.eager import start_eagerly

_marked: ContextVar[str] = ContextVar("marked", default="unset")


async def test_the_first_step_runs_in_the_call_and_the_rest_as_a_task() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []
    answer: asyncio.Future[int] = loop.create_future()

    async def work() -> int:
        log.append("sent")
        first = await answer  # the value the future resolves with reaches the coroutine
        log.append(f"got {first}")
        await asyncio.sleep(0)
        return first * 2

    task = start_eagerly(loop, work())
    assert log == ["sent"]  # before any turn of the loop
    assert not task.done()
    answer.set_result(21)
    assert await task == 42
    assert log == ["sent", "got 21"]


async def test_a_coroutine_that_ends_or_fails_without_waiting_gives_a_done_future() -> None:
    loop = asyncio.get_running_loop()

    async def at_once() -> str:
        return "value"

    async def fails() -> None:
        raise LookupError("gone")

    ended = start_eagerly(loop, at_once())
    assert ended.done()
    assert ended.result() == "value"
    failed = start_eagerly(loop, fails())
    with pytest.raises(LookupError, match="gone"):
        await failed


async def test_context_variables_set_in_the_first_step_are_the_tasks_own() -> None:
    """As with a task: what the coroutine sets stays in its context (the ingest's SQLite store
    sets a variable while it holds the write gate and resets it later, in another step)."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    async def holds() -> None:
        token = _marked.set("held")
        await asyncio.sleep(0)
        seen.append(_marked.get())
        _marked.reset(token)  # a token from another context would raise ValueError here
        seen.append(_marked.get())

    task = start_eagerly(loop, holds())
    assert _marked.get() == "unset"  # the caller's context is untouched
    await task
    assert seen == ["held", "unset"]


async def test_a_cancel_reaches_the_coroutine_which_decides_what_it_means() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []

    async def cleans_up() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            log.append("cancelled inside")
            raise

    async def survives() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "kept going"
        return "never"

    task = start_eagerly(loop, cleans_up())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["cancelled inside"]
    other = start_eagerly(loop, survives())
    other.cancel()
    assert await other == "kept going"
