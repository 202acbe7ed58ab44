"""The inbound path's integration cache: requests that miss together share one lookup, on every
database (the entry's query and its credentials' decryption)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import Any

import pytest

from chatgate.domain.errors import NotFound
from chatgate.services.integration_cache import IntegrationCache
from tests.conftest import Api
from tests.sql_capture import captured
from tests.webhook_helpers import webhook_integration


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def integration_lookups(api: Api) -> AbstractContextManager[list[tuple[str, Any]]]:
    """The queries of the integrations table, while the block runs."""
    return captured(api, "SELECT INTEGRATIONS")


def cache_for(api: Api, clock: ManualClock) -> IntegrationCache:
    return IntegrationCache(api.container.db, api.container.integrations, ttl=5.0, clock=clock)


async def test_requests_that_miss_together_share_one_lookup(api: Api) -> None:
    integration = await webhook_integration(api, await api.tenant())
    clock = ManualClock()
    cache = cache_for(api, clock)
    with integration_lookups(api) as lookups:
        found = await asyncio.gather(
            *(cache.by_public_id("webhook", integration["public_id"]) for _ in range(20))
        )
        assert len(lookups) == 1
        assert all(entry is found[0] for entry in found)
        assert found[0].ref.id == integration["id"]
        assert found[0].credentials["inbound_secret"]

        clock.now += 4.9  # still fresh: no lookup
        assert await cache.by_public_id("webhook", integration["public_id"]) is found[0]
        assert len(lookups) == 1

        clock.now += 0.2  # expired: the next misses share the next lookup
        again = await asyncio.gather(
            *(cache.by_public_id("webhook", integration["public_id"]) for _ in range(5))
        )
        assert len(lookups) == 2
        assert all(entry is again[0] for entry in again)
        assert again[0] is not found[0]


async def test_a_lookup_that_fails_fails_every_waiter_and_is_not_kept(api: Api) -> None:
    cache = cache_for(api, ManualClock())
    with integration_lookups(api) as lookups:
        outcomes = await asyncio.gather(
            *(cache.by_public_id("webhook", "no-such-integration") for _ in range(4)), return_exceptions=True
        )
        assert len(lookups) == 1
        assert all(isinstance(outcome, NotFound) for outcome in outcomes), outcomes
        with pytest.raises(NotFound):  # tried again, not answered from a remembered failure
            await cache.by_public_id("webhook", "no-such-integration")
        assert len(lookups) == 2


async def test_a_waiter_that_gives_up_does_not_cancel_the_others_lookup(api: Api) -> None:
    integration = await webhook_integration(api, await api.tenant())
    cache = cache_for(api, ManualClock())
    first = asyncio.ensure_future(cache.by_public_id("webhook", integration["public_id"]))
    second = asyncio.ensure_future(cache.by_public_id("webhook", integration["public_id"]))
    await asyncio.sleep(0)  # both are waiting for the one lookup
    first.cancel()
    entry = await second
    assert entry.ref.id == integration["id"]
    assert first.cancelled()
    assert cache.fresh("webhook", integration["public_id"]) is entry
