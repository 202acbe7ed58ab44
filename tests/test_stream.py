"""The live event stream (SSE and WebSocket) against a real uvicorn server in this process,
and the Redis bridge that carries notifications between API processes in scaled mode.

A real server because httpx's ASGITransport buffers whole responses and cannot speak
WebSocket; in-process so that the server shares the app's container and event loop, and a
test can see which tasks are left after a client goes away.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatgate.api.routes import stream
from chatgate.bootstrap import Container
from chatgate.config import Settings
from chatgate.services.fanout import EventNotifier, PendingFanout
from chatgate.services.notifier_redis import RedisEventBridge
from tests.asgi_server import server_config
from tests.conftest import Api, TenantHandle, running_api, unique
from tests.servers import RedisServer
from tests.test_events_feed import all_events, ensure_event_routes, receive_messages
from tests.webhook_helpers import eventually, message_payload, post_inbound, webhook_integration

# --------------------------------------------------------------------------- helpers


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve an already started app over TCP on 127.0.0.1; yields host:port."""
    ensure_event_routes(app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    config = server_config(app, lifespan="off", log_config=None, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="test-uvicorn")
    try:

        async def up() -> bool:
            return server.started or task.done()

        await eventually(up, timeout=10)
        assert not task.done(), "uvicorn did not start"
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


class SseReader:
    """Frames of one text/event-stream response: {"id", "event", "data", "retry", "comment"}."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def frame(self, timeout: float = 5.0) -> dict[str, str]:
        frame: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while True:
                line = await anext(self.lines)
                if line == "":
                    if frame:
                        return frame
                    continue
                if line.startswith(":"):
                    frame["comment"] = line[1:].strip()
                    continue
                field, _, value = line.partition(":")
                frame[field] = value.removeprefix(" ")

    async def events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next `count` event frames (comments and retry hints skipped), checked and parsed."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            frame = await self.frame(timeout)
            if "data" not in frame:
                continue
            envelope: dict[str, Any] = json.loads(frame["data"])
            assert frame["id"] == str(envelope["sequence"])
            assert frame["event"] == envelope["type"]
            found.append(envelope)
        return found


def http_client(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{address}", trust_env=False, timeout=10)


def ws_connect(address: str, headers: dict[str, str] | None = None, **params: Any) -> connect:
    query = f"?{urlencode(params)}" if params else ""
    return connect(
        f"ws://{address}/v1/stream/ws{query}", additional_headers=headers, proxy=None, open_timeout=10
    )


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), timeout)
    envelope: dict[str, Any] = json.loads(message)
    return envelope


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code, ws.close_reason


async def no_tasks_beyond(baseline: set[asyncio.Task[Any]]) -> None:
    """Every task started since `baseline` finishes soon: nothing leaked by a closed stream.
    (The app's workers start short-lived tasks all the time; those finish too.)"""
    await asyncio.sleep(0.5)  # the server notices the disconnect and unwinds
    current = asyncio.current_task()
    suspects = [t for t in asyncio.all_tasks() if t not in baseline and t is not current]

    async def settled() -> bool:
        return all(t.done() for t in suspects)

    try:
        await eventually(settled, timeout=5)
    except AssertionError:
        raise AssertionError(f"tasks left behind: {[t for t in suspects if not t.done()]}") from None


async def one_message(api: Api, integration: dict[str, Any], text: str) -> None:
    message_id = unique("m-")
    payload = message_payload(text, message_id=message_id)
    response = await post_inbound(api, integration, payload, event_id=f"evt-{message_id}")
    assert response.status_code == 200, response.text


async def tenant_with_messages(api: Api, texts: list[str]) -> tuple[TenantHandle, dict[str, Any]]:
    tenant = await api.tenant()
    integration = await webhook_integration(api, tenant)
    await receive_messages(api, tenant, integration, texts)
    return tenant, integration


# --------------------------------------------------------------------------- Server-Sent Events


async def test_sse_streams_live_and_resumes_from_last_event_id(sqlite_api: Api) -> None:
    api = sqlite_api
    tenant, integration = await tenant_with_messages(api, ["one", "two"])
    logged = await all_events(api, tenant)
    assert len(logged) == 4
    async with serve(api.app) as address, http_client(address) as client:
        async with client.stream("GET", "/v1/stream", headers=tenant.key_headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            reader = SseReader(response)
            assert await reader.frame() == {"retry": str(stream.RETRY_MILLISECONDS)}
            assert await reader.events(4) == logged  # the backlog, exactly as the pull API has it
            await one_message(api, integration, "live")
            live = (await reader.events(1))[0]
            assert (live["type"], live["sequence"], live["data"]["text"]) == ("message.received", 5, "live")

        # EventSource reconnects with Last-Event-ID; it wins over the `after` of the original URL.
        headers = {**tenant.key_headers, "Last-Event-ID": "3"}
        async with client.stream("GET", "/v1/stream?after=0", headers=headers) as response:
            resumed = await SseReader(response).events(2)
            assert [e["sequence"] for e in resumed] == [4, 5]
        filtered = {"types": "message.received", "after": "3"}
        async with client.stream(
            "GET", "/v1/stream", params=filtered, headers=tenant.key_headers
        ) as response:
            only = await SseReader(response).events(1)
            assert [(e["type"], e["sequence"]) for e in only] == [("message.received", 4)]


async def test_sse_heartbeat_and_clean_disconnect(sqlite_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "HEARTBEAT_SECONDS", 0.2)
    tenant = await sqlite_api.tenant()
    async with serve(sqlite_api.app) as address, http_client(address) as client:
        await asyncio.sleep(0.1)
        baseline = set(asyncio.all_tasks())
        async with client.stream("GET", "/v1/stream", headers=tenant.key_headers) as response:
            reader = SseReader(response)
            await reader.frame()  # retry hint
            started = time.monotonic()
            for _ in range(3):
                assert await reader.frame(timeout=2) == {"comment": "ping"}
            assert time.monotonic() - started < 2.0
        await no_tasks_beyond(baseline)


async def test_sse_refuses_missing_credentials_and_bad_filters(sqlite_api: Api) -> None:
    ensure_event_routes(sqlite_api.app)
    client = sqlite_api.client
    assert (await client.get("/v1/stream")).status_code == 401
    tenant = await sqlite_api.tenant()
    bad = await client.get("/v1/stream", params={"types": "nope"}, headers=tenant.key_headers)
    assert bad.status_code == 422
    assert "'nope'" in bad.json()["detail"]
    bad_id = await client.get("/v1/stream", headers={**tenant.key_headers, "Last-Event-ID": "x"})
    assert bad_id.status_code == 422


# --------------------------------------------------------------------------- WebSocket


async def test_ws_reconnect_with_last_sequence_gets_exactly_the_missed_events(api: Api) -> None:
    tenant, integration = await tenant_with_messages(api, ["a", "b", "c"])
    async with serve(api.app) as address:
        async with ws_connect(address, tenant.key_headers, after=0) as ws:
            seen = [await recv_json(ws) for _ in range(2)]
            await ws.send(json.dumps({"ack": seen[-1]["sequence"]}))
        last = seen[-1]["sequence"]
        assert [e["sequence"] for e in seen] == [1, 2]

        # While disconnected: more events. Some of the earlier ones were never read either.
        await receive_messages(api, tenant, integration, ["d", "e"])
        missed = [e for e in await all_events(api, tenant) if e["sequence"] > last]
        assert len(missed) == 5

        async with ws_connect(address, tenant.key_headers, after=last) as ws:
            got = [await recv_json(ws) for _ in range(len(missed))]
            with pytest.raises(TimeoutError):
                await recv_json(ws, timeout=0.5)  # nothing more: no duplicates
    assert got == missed
    assert [e["sequence"] for e in got] == list(range(last + 1, last + 6))
    assert not {e["id"] for e in got} & {e["id"] for e in seen}


async def test_ws_authenticates_from_headers_or_token(sqlite_api: Api) -> None:
    api = sqlite_api
    tenant, _ = await tenant_with_messages(api, ["hi"])
    access_token = (await tenant.login())["access_token"]
    created = await api.client.post(
        "/v1/api-keys", json={"name": "sender", "scopes": ["send"]}, headers=tenant.key_headers
    )
    send_only = created.json()["key"]
    accepted: list[tuple[dict[str, str] | None, dict[str, Any]]] = [
        (tenant.key_headers, {}),
        ({"Authorization": f"Bearer {tenant.api_key}"}, {}),
        ({"Authorization": f"Bearer {access_token}"}, {}),
        (None, {"token": tenant.api_key}),
        (None, {"token": access_token}),
    ]
    async with serve(api.app) as address:
        for headers, params in accepted:
            async with ws_connect(address, headers, types="message.received", **params) as ws:
                event = await recv_json(ws)
                assert (event["type"], event["tenant_id"]) == ("message.received", tenant.id)

        refused: list[tuple[dict[str, str] | None, dict[str, Any], int, str]] = [
            (None, {}, 4401, "X-API-Key"),
            (None, {"token": tenant.api_key[:-4] + "AAAA"}, 4401, "not valid"),
            (None, {"token": "cgk_nope"}, 4401, "malformed"),
            (None, {"token": "not-a-jwt"}, 4401, ""),
            ({"X-API-Key": send_only}, {}, 4403, "'read'"),
            (tenant.key_headers, {"types": "message.sent"}, 4422, "'message.sent'"),
        ]
        for headers, params, code, reason in refused:
            async with ws_connect(address, headers, **params) as ws:
                got_code, got_reason = await closed_with(ws)
                assert got_code == code, (params, got_reason)
                assert reason in (got_reason or "")


async def test_ws_disconnect_leaves_no_tasks(sqlite_api: Api) -> None:
    tenant, integration = await tenant_with_messages(sqlite_api, ["one"])
    async with serve(sqlite_api.app) as address:
        await asyncio.sleep(0.1)
        baseline = set(asyncio.all_tasks())
        async with ws_connect(address, tenant.key_headers, after=2) as ws:
            assert (await recv_json(ws))["sequence"] == 3
            await ws.send(json.dumps({"ack": 3}))
            await ws.send("not even JSON")  # ignored, the stream goes on
            await one_message(sqlite_api, integration, "live")
            assert (await recv_json(ws))["data"]["text"] == "live"
            named = {t.get_name() for t in asyncio.all_tasks()}
            assert {"stream.ws.send", "stream.ws.receive"} <= named
        await no_tasks_beyond(baseline)


# --------------------------------------------------------------------------- Redis bridge


async def test_bridge_relays_and_survives_a_dropped_subscription(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    notifier = EventNotifier()
    channel = unique("cg:test:")
    bridge = RedisEventBridge(redis, notifier, channel)
    stop = asyncio.Event()
    runner = asyncio.create_task(bridge.run(stop))

    async def subscribed() -> bool:
        counts = await redis.pubsub_numsub(channel)
        return bool(counts and counts[0][1] == 1)

    try:
        await eventually(subscribed)
        await bridge.publish("ten_a", 1)
        assert await notifier.wait("ten_a", 0, 2)
        await redis.publish(channel, b"garbage")  # ignored, not fatal
        await redis.client_kill_filter(_type="pubsub")
        sequence = 1

        async def relayed_again() -> bool:
            # Messages published while the bridge resubscribes are lost (the database poll
            # covers that gap), so publish until one gets through.
            nonlocal sequence
            sequence += 1
            await bridge.publish("ten_a", sequence)
            return await notifier.wait("ten_a", sequence - 1, 0.2)

        await eventually(relayed_again, timeout=5)
        assert not runner.done()
    finally:
        stop.set()
        await asyncio.wait_for(runner, 3)
        await redis.aclose()


async def test_bridge_never_raises_when_redis_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    bridge = RedisEventBridge(redis, EventNotifier(), publish_timeout=0.5, max_backoff=0.2)
    stop = asyncio.Event()
    try:
        started = time.monotonic()
        await bridge.publish("ten_a", 1)  # logged, not raised
        assert time.monotonic() - started < 2.0
        runner = asyncio.create_task(bridge.run(stop))
        await asyncio.sleep(0.5)
        assert not runner.done()  # retrying with backoff
        stop.set()
        await asyncio.wait_for(runner, 2)
    finally:
        await redis.aclose()


def _scaled_settings(tmp_path: Path, redis_url: str) -> dict[str, Any]:
    return {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        "redis_url": redis_url,
        "keyring_keys": f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
        "jwt_secret": secrets.token_urlsafe(40),
    }


@pytest.mark.slow
async def test_live_stream_across_two_api_processes(
    redis_server: RedisServer,
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """App A commits (its workers process inbound); a client streams from app B, which has no
    workers. B hears of A's commits only through Redis; the 1 s database poll is the fallback."""
    shared = _scaled_settings(tmp_path, redis_server.url)
    async with (
        running_api(settings_factory(**shared)) as api_a,
        running_api(settings_factory(**shared, run_workers_in_api=False)) as api_b,
    ):
        stop = asyncio.Event()
        relays = _wire_bridges(api_a.container, api_b.container, stop, monkeypatch)
        commits: dict[int, float] = {}
        _record_commits(api_a.container, commits, monkeypatch)
        heard: list[int] = []
        _spy_notifications(api_b.container, heard, monkeypatch)
        try:
            tenant, integration = await tenant_with_messages(api_a, ["warm up"])
            ensure_event_routes(api_b.app)
            latencies: list[float] = []
            streamed: list[int] = []
            async with (
                serve(api_b.app) as address,
                ws_connect(address, tenant.key_headers, after=3, types="message.received") as ws,
            ):
                await asyncio.sleep(0.3)
                for i in range(5):
                    await one_message(api_a, integration, f"across {i}")
                    event = await recv_json(ws, timeout=5)
                    latencies.append(time.monotonic() - commits[event["sequence"]])
                    streamed.append(event["sequence"])
                    assert event["data"]["text"] == f"across {i}"
                    await asyncio.sleep(0.1 + 0.15 * i)  # land at different points of the poll cycle
        finally:
            stop.set()
            await asyncio.gather(*relays)
    print(f"A-commit to B-client latencies: {', '.join(f'{x * 1000:.0f} ms' for x in latencies)}")
    assert statistics.median(latencies) < 0.8
    assert max(latencies) < 1.5
    assert set(streamed) <= set(heard)  # B was told by the bridge, not only by its own polling


def _wire_bridges(
    a: Container, b: Container, stop: asyncio.Event, monkeypatch: pytest.MonkeyPatch
) -> list[asyncio.Task[None]]:
    """Use the lead's wiring when it exists (`Container.event_bridge`); until then, do it here."""
    if getattr(a, "event_bridge", None) is not None:
        return []
    assert a.redis is not None
    assert b.redis is not None
    publisher = RedisEventBridge(a.redis, a.notifier)
    after_commit = a.fanout.after_commit

    async def publish_after_commit(pending: PendingFanout) -> None:
        await after_commit(pending)
        if pending.last_sequence:
            await publisher.publish(pending.tenant_id, pending.last_sequence)

    monkeypatch.setattr(a.fanout, "after_commit", publish_after_commit)
    return [asyncio.create_task(RedisEventBridge(b.redis, b.notifier).run(stop))]


def _record_commits(a: Container, commits: dict[int, float], monkeypatch: pytest.MonkeyPatch) -> None:
    after_commit = a.fanout.after_commit

    async def timed(pending: PendingFanout) -> None:
        if pending.last_sequence:
            commits[pending.last_sequence] = time.monotonic()
        await after_commit(pending)

    monkeypatch.setattr(a.fanout, "after_commit", timed)


def _spy_notifications(b: Container, heard: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    notify = b.notifier.notify

    async def spy(tenant_id: str, sequence: int) -> None:
        heard.append(sequence)
        await notify(tenant_id, sequence)

    monkeypatch.setattr(b.notifier, "notify", spy)
