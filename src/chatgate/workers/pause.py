"""Waiting for a stop signal with a deadline, without an extra task per wait.

`asyncio.wait_for(event.wait(), t)` wraps the wait in a new task on every call; a periodic loop
then leaves a fresh task alive for its whole interval. `asyncio.timeout` cancels in place.
"""

from __future__ import annotations

import asyncio


async def wait_until_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `stop`; True when it was set, False when the time ran out."""
    try:
        async with asyncio.timeout(max(seconds, 0)):
            await stop.wait()
    except TimeoutError:
        return False
    return True
