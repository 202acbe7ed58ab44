"""Shared fixtures. Real database/cache servers come from tests/servers.py.

`api` runs a test against every database backend (SQLite, PostgreSQL, MariaDB); `sqlite_api`
only against the embedded default, for behaviour that does not depend on the database.
"""

from __future__ import annotations

import base64
import itertools
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from chatgate.app import create_app
from chatgate.bootstrap import Container
from chatgate.config import Settings
from chatgate.domain.access import Role

pytest_plugins = ["tests.servers"]

BACKENDS = ["sqlite", "postgresql", "mariadb"]
_counter = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}{secrets.token_hex(3)}"


def random_key_spec() -> str:
    return f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def make_settings(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "jwt_secret": secrets.token_urlsafe(40),
        "rate_limit_ip_per_second": 100_000,
        "rate_limit_ip_burst": 100_000,
        "rate_limit_key_per_second": 100_000,
        "rate_limit_key_burst": 100_000,
        "run_workers_in_api": True,
        "sweeper_interval_seconds": 0.2,
        "outbound_allow_hosts": ["127.0.0.1"],
        "outbound_allow_http": True,
        "log_json": True,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Api:
    """A running app (lifespan started) and an HTTP client bound to it."""

    backend: str
    container: Container
    client: httpx.AsyncClient
    app: FastAPI

    async def tenant(self) -> TenantHandle:
        slug = unique("t")
        password = "correct horse battery"
        email = f"owner@{slug}.example"
        result = await self.container.access.bootstrap_tenant(
            name=slug, slug=slug, owner_email=email, owner_password=password
        )
        return TenantHandle(self, result.tenant.id, slug, result.api_key.plaintext, email, password)


@dataclass
class TenantHandle:
    api: Api
    id: str
    slug: str
    api_key: str
    owner_email: str
    owner_password: str

    @property
    def key_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    async def login(self, email: str | None = None, password: str | None = None) -> dict[str, Any]:
        response = await self.api.client.post(
            "/v1/auth/login",
            json={"email": email or self.owner_email, "password": password or self.owner_password},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def owner_headers(self) -> dict[str, str]:
        tokens = await self.login()
        return {"Authorization": f"Bearer {tokens['access_token']}"}

    async def user_headers(self, role: Role) -> dict[str, str]:
        email = f"{role.value}-{unique('u')}@{self.slug}.example"
        response = await self.api.client.post(
            "/v1/users",
            json={"email": email, "password": "a long enough password", "role": role.value},
            headers=await self.owner_headers(),
        )
        assert response.status_code == 201, response.text
        tokens = await self.login(email, "a long enough password")
        return {"Authorization": f"Bearer {tokens['access_token']}"}


async def database_url_for(backend: str, request: pytest.FixtureRequest, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    server = request.getfixturevalue("postgres_server" if backend == "postgresql" else "mariadb_server")
    url: str = server.create_database(unique("cg_"))
    return url


async def start_api(settings: Settings, backend: str, **container_kwargs: Any) -> AsyncIterator[Api]:
    container = Container(settings, **container_kwargs)
    app = create_app(container)
    async with LifespanManager(app, startup_timeout=120) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(backend, container, client, app)


@asynccontextmanager
async def running_api(
    settings: Settings, backend: str = "sqlite", **container_kwargs: Any
) -> AsyncIterator[Api]:
    runs = start_api(settings, backend, **container_kwargs)
    api = await runs.__anext__()
    try:
        yield api
    finally:
        await runs.aclose()


@pytest.fixture(scope="session", params=BACKENDS)
async def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """One migrated database per backend for the whole session; tests isolate by tenant."""
    backend: str = request.param
    tmp = tmp_path_factory.mktemp(f"api-{backend}")
    url = await database_url_for(backend, request, tmp)
    settings = make_settings(tmp, url)
    async for running in start_api(settings, backend):
        yield running


@pytest.fixture(scope="session")
async def sqlite_api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    tmp = tmp_path_factory.mktemp("api-sqlite-only")
    settings = make_settings(tmp, None)
    async for running in start_api(settings, "sqlite"):
        yield running


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        return make_settings(tmp_path, overrides.pop("database_url", None), **overrides)

    return factory


@pytest.fixture(params=BACKENDS)
async def quiet(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """A fresh API without background workers, on each database: the test runs the workers."""
    url = await database_url_for(request.param, request, tmp_path)
    settings = make_settings(tmp_path, url, run_workers_in_api=False)
    async with running_api(settings, request.param) as api:
        yield api


@pytest.fixture
async def receiver() -> AsyncIterator[Any]:
    """A tenant's webhook receiver on 127.0.0.1 (tests.webhook_helpers.Receiver)."""
    from tests.webhook_helpers import start_receiver  # it imports this module

    site, runner = await start_receiver()
    yield site
    await runner.cleanup()
