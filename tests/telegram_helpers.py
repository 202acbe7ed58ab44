"""Helpers for the Telegram end-to-end tests: the sandbox Bot API and chatgate, both served on
127.0.0.1 over real HTTP, so chatgate's calls and the sandbox's webhook deliveries cross sockets.

`telegram_stack(settings_factory, webhook=True)` yields a `Stack`: the sandbox (`.sandbox`, the
`SandboxBotApi` itself, driven through its Python API) and chatgate (`.api`, an `Api` whose client
talks HTTP to the served app). In webhook mode `public_base_url` is the served app's own URL, so
the sandbox delivers updates to `/in/telegram/{public_id}`; without it the bots poll.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import httpx
from aiohttp import web

from chatgate.app import create_app
from chatgate.bootstrap import Container
from chatgate.config import Settings
from chatgate.sandbox.telegram_bot_api import SandboxBotApi
from chatgate.sandbox.telegram_bot_api.state import Bot
from tests.asgi_server import serve_asgi
from tests.conftest import Api, TenantHandle, make_settings, unique
from tests.webhook_helpers import Receiver, eventually

UPDATES = Path(__file__).parent / "contracts" / "telegram-updates" / "updates"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def until(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """`eventually` for checks that may be plain functions as well as coroutines."""
    return await eventually(cast(Callable[[], Awaitable[Any]], check), timeout=timeout, interval=interval)


@asynccontextmanager
async def serve_app(
    app: Any, *, lifespan: Literal["auto", "on", "off"] = "on", sock: socket.socket | None = None
) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 (on `sock` when given, so its URL can be known before the
    app is built) and yield its base URL. Startup may run migrations: up to 60 s."""
    async with serve_asgi(app, lifespan=lifespan, sock=sock, startup_seconds=60, stop_seconds=30) as url:
        yield url


def reserve_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Stack:
    sandbox: SandboxBotApi
    sandbox_url: str
    api: Api
    url: str  # where chatgate is served
    settings: Settings
    bots: list[Bot] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # every token a test used (leak checks)
    integration_id: str = ""  # the integration a test is about, when it has one

    def new_bot(self, **kwargs: Any) -> Bot:
        bot = self.sandbox.create_bot(**kwargs)
        self.bots.append(bot)
        return bot

    def calls(self, bot_id: int, method: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.sandbox.inspect_bot(bot_id)["calls"]
        return [c for c in found if method is None or c["method"].lower() == method.lower()]

    async def deliveries(self, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            await self.sandbox.wait_for_deliveries()

    async def connect(self, tenant: TenantHandle, bot: Bot, **config: Any) -> dict[str, Any]:
        response = await self.api.client.post(
            "/v1/integrations",
            json={
                "kind": "telegram_bot",
                "name": unique("bot "),
                "credentials": {"bot_token": bot.token},
                "config": config,
            },
            headers=tenant.key_headers,
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def integration(self, tenant: TenantHandle, integration_id: str) -> dict[str, Any]:
        response = await self.api.client.get(f"/v1/integrations/{integration_id}", headers=tenant.key_headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@asynccontextmanager
async def sandbox_server(**options: Any) -> AsyncIterator[tuple[SandboxBotApi, str]]:
    options.setdefault("webhook_retry_delay", 0.05)
    sandbox = SandboxBotApi(**options)
    async with serve_app(sandbox.app) as url:
        yield sandbox, url


@asynccontextmanager
async def chatgate_server(
    settings_factory: Callable[..., Settings], *, webhook: bool = True, **overrides: Any
) -> AsyncIterator[tuple[Api, str, Settings]]:
    sock = reserve_socket()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    overrides.setdefault("telegram_poll_scan_interval_seconds", 0.2)
    overrides.setdefault("telegram_poll_timeout_seconds", 1)
    settings = settings_factory(public_base_url=public if webhook else None, **overrides)
    container = Container(settings)
    app = create_app(container)
    async with (
        serve_app(app, sock=sock) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        yield Api("sqlite", container, client, app), url, settings


@asynccontextmanager
async def telegram_stack(
    settings_factory: Callable[..., Settings],
    *,
    webhook: bool = True,
    sandbox_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as stack:
        sandbox, sandbox_url = await stack.enter_async_context(sandbox_server(**(sandbox_options or {})))
        overrides.setdefault("telegram_api_base", sandbox_url)
        api, url, settings = await stack.enter_async_context(
            chatgate_server(settings_factory, webhook=webhook, **overrides)
        )
        yield Stack(sandbox, sandbox_url, api, url, settings)


def delivered(receiver: Receiver, endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """Event payloads the receiver got for this endpoint, in arrival order."""
    path = endpoint["url"].split("127.0.0.1", 1)[1].split("/", 1)[1]
    return [json.loads(r["body"]) for r in receiver.requests if r["path"] == "/" + path]


async def raw_events(api: Api, tenant: TenantHandle, integration_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"integration_id": integration_id, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = await api.client.get("/v1/raw-events", params=params, headers=tenant.key_headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


async def settled_raw_events(
    api: Api, tenant: TenantHandle, integration_id: str, count: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """The integration's raw events once `count` exist and none is pending."""

    async def check() -> list[dict[str, Any]] | None:
        items = await raw_events(api, tenant, integration_id)
        if len(items) >= count and all(i["status"] != "pending" for i in items):
            return items
        return None

    found: list[dict[str, Any]] = await eventually(check, timeout=timeout, interval=0.1)
    return found


async def message_status(
    api: Api, tenant: TenantHandle, message_id: str, wanted: tuple[str, ...] = ("sent", "failed")
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await api.client.get(f"/v1/messages/{message_id}", headers=tenant.key_headers)
        body: dict[str, Any] = response.json()
        return body if body["status"] in wanted else None

    found: dict[str, Any] = await eventually(check, timeout=20)
    return found


def text_update(
    chat_id: int,
    text: str,
    *,
    user_id: int | None = None,
    chat_type: str = "private",
    message_id: int | None = None,
) -> dict[str, Any]:
    """A `message` update (the sandbox fills in message_id and date when they are left out)."""
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = "Ann"
    else:
        chat["title"] = "A group"
    message: dict[str, Any] = {
        "from": {"id": user_id or chat_id, "is_bot": False, "first_name": "Ann"},
        "chat": chat,
        "text": text,
    }
    if message_id is not None:
        message = {"message_id": message_id, "date": 1700000000, **message}
    return {"message": message}


def factory_in(tmp: Path) -> Callable[..., Settings]:
    """A `settings_factory` for module-scoped stacks (tests.conftest's is per test)."""

    def factory(**overrides: Any) -> Settings:
        return make_settings(tmp, overrides.pop("database_url", None), **overrides)

    return factory


async def events(
    api: Api, tenant: TenantHandle, types: str, integration_id: str | None = None
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"types": types, "limit": 500}
    if integration_id:
        params["integration_id"] = integration_id
    response = await api.client.get("/v1/events", params=params, headers=tenant.key_headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


@asynccontextmanager
async def file_host(files: dict[str, tuple[bytes, str]]) -> AsyncIterator[str]:
    """A plain HTTP file server on 127.0.0.1 (the sandbox fetches URLs given as files from it)."""

    async def handle(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[0], content_type=found[1])

    app = web.Application()
    app.router.add_get("/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = reserve_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
