"""Provider webhooks answered by the HTTP protocol itself (api/inbound_protocol.py), on a real
uvicorn server and a raw socket: the bytes, keep-alive and close, pipelining, refusals, a client
gone before its answer. Everything else still reaches the ASGI app."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from sqlalchemy import func, select

from chatgate.api.inbound_fast import MAX_INBOUND_BYTES
from chatgate.api.inbound_protocol import webhook_target
from chatgate.delivery import signing
from chatgate.store.models import RawEvent
from tests.asgi_server import serve_asgi, server_config
from tests.conftest import Api
from tests.webhook_helpers import INBOUND_SECRET, message_payload, webhook_integration


class CountingApp:
    """The chatgate app, counting the requests that reach it through ASGI (`app` is where the
    protocol finds the inbound fast path, as it does through uvicorn's middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.http_calls: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.http_calls.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


@dataclass
class Served:
    """A webhook integration of a new tenant, and the chatgate app on a real uvicorn server."""

    app: CountingApp
    host: str
    port: int
    path: str  # the integration's inbound path
    integration_id: str

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)


@asynccontextmanager
async def served(api: Api) -> AsyncIterator[Served]:
    integration = await webhook_integration(api, await api.tenant())
    app = CountingApp(api.app)
    async with serve_asgi(app) as url:
        port = int(url.rsplit(":", 1)[1])
        yield Served(app, "127.0.0.1", port, integration["inbound_path"], integration["id"])


def webhook(path: str, event_id: str, text: str = "hi", *, extra: str = "", version: str = "1.1") -> bytes:
    body = json.dumps(message_payload(text, message_id=event_id)).encode()
    headers = signing.headers(INBOUND_SECRET, event_id, int(time.time()), body)
    lines = [f"POST {path} HTTP/{version}", "Host: gateway.example", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    return int(status_line.split()[1]), headers, body


async def stored(api: Api, integration_id: str) -> int:
    async with api.container.db.sessions() as session:
        count = select(func.count()).select_from(RawEvent).where(RawEvent.integration_id == integration_id)
        return int((await session.execute(count)).scalar_one())


async def test_a_webhook_is_stored_and_answered_without_reaching_the_asgi_app(sqlite_api: Api) -> None:
    async with served(sqlite_api) as server:
        reader, writer = await server.connect()
        answers = []
        # The first meets an integration not yet cached (answered from a coroutine), the next
        # ones the cached one (answered from the batch's commit); the last is a duplicate.
        for event_id in ("p-1", "p-2", "p-3", "p-3"):
            writer.write(webhook(server.path, event_id))
            answers.append(await read_response(reader))
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        health = await read_response(reader)
        writer.close()
    assert [(status, json.loads(body)) for status, _, body in answers] == [
        (200, {"ok": True, "duplicate": False}),
        (200, {"ok": True, "duplicate": False}),
        (200, {"ok": True, "duplicate": False}),
        (200, {"ok": True, "duplicate": True}),
    ]
    for _, headers, body in answers:
        assert headers["content-type"] == "application/json"
        assert int(headers["content-length"]) == len(body)
        assert "date" in headers  # uvicorn's default headers, as on its own path
        assert "connection" not in headers  # kept alive
    assert health[0] == 200
    assert server.app.http_calls == ["GET /health/live"]
    assert await stored(sqlite_api, server.integration_id) == 3


async def test_the_answer_is_the_same_as_through_asgi(sqlite_api: Api) -> None:
    """`Expect: 100-continue` is left to uvicorn's ASGI path: the same request both ways."""
    async with served(sqlite_api) as server:
        reader, writer = await server.connect()
        writer.write(webhook(server.path, "same-1"))
        plain = await read_response(reader)
        request = webhook(server.path, "same-2", extra="Expect: 100-continue")
        head, body = request.split(b"\r\n\r\n", 1)
        writer.write(head + b"\r\n\r\n")
        continue_line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(body)
        through_asgi = await read_response(reader)
        writer.close()
    assert continue_line.startswith(b"HTTP/1.1 100")
    assert server.app.http_calls == [f"POST {server.path}"]
    assert plain[0] == through_asgi[0] == 200
    assert plain[2] == through_asgi[2]
    assert set(plain[1]) == set(through_asgi[1])
    assert {k: v for k, v in plain[1].items() if k != "date"} == {
        k: v for k, v in through_asgi[1].items() if k != "date"
    }


async def test_connection_close_and_http_1_0_close_after_the_answer(sqlite_api: Api) -> None:
    async with served(sqlite_api) as server:
        for request in (
            webhook(server.path, "c-1", extra="Connection: close"),
            webhook(server.path, "c-2", version="1.0"),
        ):
            reader, writer = await server.connect()
            writer.write(request)
            status, headers, _ = await read_response(reader)
            assert status == 200
            assert headers["connection"] == "close"
            assert await asyncio.wait_for(reader.read(), 10) == b""  # the server closed it
            writer.close()
    assert await stored(sqlite_api, server.integration_id) == 2


async def test_pipelined_requests_are_answered_in_order(sqlite_api: Api) -> None:
    async with served(sqlite_api) as server:
        reader, writer = await server.connect()
        writer.write(webhook(server.path, "warm"))  # caches the integration
        await read_response(reader)
        writer.write(
            webhook(server.path, "pipe-1")
            + b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
            + webhook(server.path, "pipe-2")
            + webhook(server.path, "pipe-1")
        )
        answers = [await read_response(reader) for _ in range(4)]
        writer.close()
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    assert json.loads(answers[0][2]) == {"ok": True, "duplicate": False}
    assert b"duplicate" not in answers[1][2]  # the health answer, in its place
    assert json.loads(answers[2][2]) == {"ok": True, "duplicate": False}
    assert json.loads(answers[3][2]) == {"ok": True, "duplicate": True}
    assert await stored(sqlite_api, server.integration_id) == 3
    # Behind an unanswered request, webhooks queue on uvicorn's path, which keeps the order.
    assert server.app.http_calls[0] == "GET /health/live"


async def test_refusals_are_problem_answers_and_store_nothing(sqlite_api: Api) -> None:
    async with served(sqlite_api) as server:
        reader, writer = await server.connect()
        forged = webhook(server.path, "bad-1").replace(
            b"webhook-signature: v1,", b"webhook-signature: v1,AAAA"
        )
        writer.write(forged)
        unauthenticated = await read_response(reader)
        writer.write(webhook("/in/webhook/no-such-integration", "bad-2"))
        unknown = await read_response(reader)
        writer.write(webhook("/in/no-such-kind/x", "bad-3"))
        unknown_kind = await read_response(reader)
        big = b"x" * (MAX_INBOUND_BYTES + 1)
        writer.write(
            f"POST {server.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(big)}\r\n\r\n".encode() + big
        )
        too_large = await read_response(reader)
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert unauthenticated[0] == 401
    assert unknown[0] == 404
    assert unknown_kind[0] == 404
    for status, headers, body in (unauthenticated, unknown, unknown_kind):
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["status"] == status
    assert too_large[0] == 413
    assert str(MAX_INBOUND_BYTES) in json.loads(too_large[2])["detail"]
    assert too_large[1]["connection"] == "close"
    assert rest == b""  # closed: the rest of the body is not read as a request
    assert server.app.http_calls == []
    assert await stored(sqlite_api, server.integration_id) == 0


async def test_a_chunked_body_is_stored_whole(sqlite_api: Api) -> None:
    body = json.dumps(message_payload("chunked " + "z" * 5000, message_id="ch-1")).encode()
    headers = signing.headers(INBOUND_SECRET, "ch-1", int(time.time()), body)
    async with served(sqlite_api) as server:
        head = f"POST {server.path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        reader, writer = await server.connect()
        writer.write(head.encode())
        for start in range(0, len(body), 1500):
            piece = body[start : start + 1500]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.005)  # separate reads on the server
        writer.write(b"0\r\n\r\n")
        status, _, answer = await read_response(reader)
        writer.close()
    assert status == 200, answer
    async with sqlite_api.container.db.sessions() as session:
        rows = await session.execute(
            select(RawEvent.body).where(RawEvent.integration_id == server.integration_id)
        )
        assert [bytes(b) for b in rows.scalars()] == [body]


async def test_a_client_gone_before_its_answer_leaves_the_event_stored(sqlite_api: Api) -> None:
    async with served(sqlite_api) as server:
        reader, writer = await server.connect()
        writer.write(webhook(server.path, "warm"))
        await read_response(reader)
        writer.write(webhook(server.path, "gone-1"))
        await writer.drain()
        writer.transport.abort()  # gone before the commit answers
        for _ in range(200):
            if await stored(sqlite_api, server.integration_id) == 2:
                break
            await asyncio.sleep(0.02)
        # The server goes on serving; the provider's retry meets the stored event.
        reader, writer = await server.connect()
        writer.write(webhook(server.path, "gone-1"))
        status, _, body = await read_response(reader)
        writer.close()
    assert await stored(sqlite_api, server.integration_id) == 2
    assert (status, json.loads(body)) == (200, {"ok": True, "duplicate": True})


async def test_a_webhook_in_flight_when_the_server_stops_is_answered_then_the_connection_closes(
    sqlite_api: Api,
) -> None:
    integration = await webhook_integration(sqlite_api, await sqlite_api.tenant())
    path = integration["inbound_path"]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(CountingApp(sqlite_api.app), lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(webhook(path, "warm"))
        await read_response(reader)
        gate = sqlite_api.container.db.write_gate
        assert gate is not None
        async with gate.held_async():  # the webhook's batch waits for SQLite's write gate
            writer.write(webhook(path, "in-flight"))
            await writer.drain()
            await asyncio.sleep(0.2)
            server.should_exit = True
            await asyncio.sleep(0.3)
            assert not serving.done()  # stopping, and waiting for the webhook's answer
        status, headers, body = await read_response(reader)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        await asyncio.wait_for(serving, 10)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()
    assert (status, json.loads(body)) == (200, {"ok": True, "duplicate": False})
    assert headers["connection"] == "close"
    assert await stored(sqlite_api, integration["id"]) == 2


async def test_concurrent_connections_each_webhook_answered_and_stored_once(api: Api) -> None:
    """16 keep-alive connections at once, every third request pipelined behind the one before it,
    one event in five sent twice: grouped commits under the protocol, on every database."""
    connections, per_connection = 16, 25
    async with served(api) as server:

        async def one_connection(c: int) -> list[bool]:
            reader, writer = await server.connect()
            duplicates: list[bool] = []
            requests = []
            for i in range(per_connection):
                event_id = f"conc-{c}-{i // 2}" if i % 5 == 1 else f"conc-{c}-{i}"
                requests.append(webhook(server.path, event_id))
            i = 0
            while i < len(requests):
                burst = requests[i : i + 2] if i % 3 == 0 else requests[i : i + 1]
                writer.write(b"".join(burst))
                for _ in burst:
                    status, _, body = await read_response(reader)
                    assert status == 200, body
                    duplicates.append(json.loads(body)["duplicate"])
                i += len(burst)
            writer.close()
            return duplicates

        answers = await asyncio.gather(*(one_connection(c) for c in range(connections)))
    distinct = {
        f"conc-{c}-{i // 2}" if i % 5 == 1 else f"conc-{c}-{i}"
        for c in range(connections)
        for i in range(per_connection)
    }
    assert sum(len(a) for a in answers) == connections * per_connection
    assert sum(not duplicate for a in answers for duplicate in a) == len(distinct)
    assert await stored(api, server.integration_id) == len(distinct)
    assert server.app.http_calls.count(f"POST {server.path}") < connections * per_connection // 2


def test_the_targets_the_protocol_answers_itself() -> None:
    assert webhook_target(b"/in/webhook/abc") == ("webhook", "abc", "/in/webhook/abc", b"")
    assert webhook_target(b"/in/twilio/abc?x=1&y=2") == ("twilio", "abc", "/in/twilio/abc", b"x=1&y=2")
    for left_to_uvicorn in (b"/in/webhook", b"/in/webhook/", b"/in//abc", b"/in/a/b/c", b"/v1/in/a/b"):
        assert webhook_target(left_to_uvicorn) is None, left_to_uvicorn
    assert webhook_target(b"/in/webhook/a%20b") is None  # percent-encoded: uvicorn decodes it
