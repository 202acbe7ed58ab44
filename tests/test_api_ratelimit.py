"""API rate limits: per credential and per client IP, 429 with Retry-After; shared through Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatgate.config import Settings
from tests.conftest import random_key_spec, start_api


async def test_per_key_limit_answers_429_with_retry_after(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        keyring_keys=random_key_spec(), rate_limit_key_per_second=1, rate_limit_key_burst=3
    )
    async for api in start_api(settings, "sqlite"):
        tenant = await api.tenant()
        statuses = [
            (await api.client.get("/v1/me", headers=tenant.key_headers)).status_code for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        limited = await api.client.get("/v1/me", headers=tenant.key_headers)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "requests/s for this credential" in limited.json()["detail"]
        # Another credential of the same tenant has its own bucket.
        other = await tenant.owner_headers()
        assert (await api.client.get("/v1/me", headers=other)).status_code == 200
        metrics = (await api.client.get("/metrics")).text
        assert 'api_rate_limited_total{limit="key"}' in metrics


async def test_per_ip_limit_applies_before_authentication(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        keyring_keys=random_key_spec(), rate_limit_ip_per_second=1, rate_limit_ip_burst=2
    )
    async for api in start_api(settings, "sqlite"):
        statuses = [(await api.client.get("/v1/me")).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        # Health probes are never limited.
        assert (await api.client.get("/health/ready")).status_code == 200


async def test_two_api_processes_share_one_bucket_through_redis(
    settings_factory: Callable[..., Settings], redis_server: Any
) -> None:
    settings = settings_factory(
        keyring_keys=random_key_spec(),
        redis_url=redis_server.url,
        rate_limit_key_per_second=0.5,
        rate_limit_key_burst=4,
    )
    async for first in start_api(settings, "sqlite"):
        tenant = await first.tenant()
        async for second in start_api(settings, "sqlite"):
            assert (await second.client.get("/health/ready")).json()["checks"]["redis"] == "ok"
            statuses = []
            for i in range(6):
                client = (first if i % 2 == 0 else second).client
                statuses.append((await client.get("/v1/me", headers=tenant.key_headers)).status_code)
            assert statuses == [200, 200, 200, 200, 429, 429]
