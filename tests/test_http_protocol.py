"""The HTTP protocol `chatgate serve` runs: each response's head and body in one write, and a
head never held past the loop's turn (HEAD answers, streams that pause after their head)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from chatgate.api.http_protocol import HeadHoldingHttpToolsProtocol, HeadHoldingTransport
from tests.asgi_server import serve_asgi

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    """Records what is written to it; delegates the rest to `inner` when one is given."""

    def __init__(self, inner: asyncio.Transport | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        if self.inner is not None:
            self.inner.write(data)

    def close(self) -> None:
        self.closed = True
        if self.inner is not None:
            self.inner.close()

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.inner.is_closing() if self.inner is not None else self.closed

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default) if self.inner is not None else default

    def pause_reading(self) -> None:
        if self.inner is not None:
            self.inner.pause_reading()

    def resume_reading(self) -> None:
        if self.inner is not None:
            self.inner.resume_reading()


def holding() -> tuple[HeadHoldingTransport, RecordingTransport]:
    inner = RecordingTransport()
    return HeadHoldingTransport(inner, asyncio.get_running_loop()), inner


# --------------------------------------------------------------------------- the transport


async def test_a_head_goes_out_with_the_body_that_follows_it() -> None:
    transport, inner = holding()
    transport.write(HEAD)
    assert inner.writes == []
    transport.write(b"ok")
    assert inner.writes == [HEAD + b"ok"]
    await asyncio.sleep(0)  # the turn's flush finds nothing left to send
    assert inner.writes == [HEAD + b"ok"]


async def test_a_large_body_is_not_copied_to_join_its_head() -> None:
    transport, inner = holding()
    body = b"x" * (1024 * 1024)
    transport.write(HEAD)
    transport.write(body)
    assert inner.writes == [HEAD, body]


async def test_a_head_alone_goes_out_at_the_next_turn() -> None:
    transport, inner = holding()
    transport.write(HEAD)
    assert inner.writes == []
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]


async def test_other_writes_go_out_at_once_and_in_order() -> None:
    transport, inner = holding()
    transport.write(b"part one")
    transport.write(memoryview(b"part two"))
    assert inner.writes == [b"part one", b"part two"]
    transport.writelines([HEAD[:10], HEAD[10:]])  # a head in pieces is still a head
    transport.write(b"ok")
    assert inner.writes == [b"part one", b"part two", HEAD + b"ok"]


async def test_close_and_a_protocol_switch_send_a_held_head_first() -> None:
    transport, inner = holding()
    transport.write(HEAD)
    transport.close()
    assert inner.writes == [HEAD]
    assert inner.closed

    transport, inner = holding()
    transport.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    switched_to = asyncio.Protocol()
    transport.set_protocol(switched_to)
    assert inner.writes == [b"HTTP/1.1 101 Switching Protocols\r\n\r\n"]
    assert inner.protocol is switched_to


async def test_an_abort_or_a_closed_connection_drops_the_held_head() -> None:
    transport, inner = holding()
    transport.write(HEAD)
    transport.abort()
    await asyncio.sleep(0)
    assert inner.aborted
    assert inner.writes == []

    transport, inner = holding()
    transport.write(HEAD)
    inner.closed = True  # the peer went away meanwhile
    await asyncio.sleep(0)
    assert inner.writes == []


# --------------------------------------------------------------------------- under uvicorn

RECORDED: list[RecordingTransport] = []


class RecordingProtocol(HeadHoldingHttpToolsProtocol):
    """The real protocol, over a transport that records what reaches the socket."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        recording = RecordingTransport(transport)
        RECORDED.append(recording)
        super().connection_made(recording)


def answers(pause: asyncio.Event) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await receive()
        path = scope["path"]
        if path == "/small":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
        elif path == "/empty":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/stream":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
            )
            await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
            await pause.wait()  # the client must have read the first line before the rest is sent
            await send({"type": "http.response.body", "body": b"second\n"})

    return app


async def test_uvicorn_sends_a_small_answer_in_one_write_and_streams_without_delay() -> None:
    RECORDED.clear()
    pause = asyncio.Event()
    async with (
        serve_asgi(answers(pause), http=RecordingProtocol) as base,
        httpx.AsyncClient(base_url=base, timeout=5) as client,
    ):
        for _ in range(3):  # one keep-alive connection, three answers
            response = await client.get("/small")
            assert (response.status_code, response.content) == (200, b"ok")
        head = await client.head("/small")
        assert (head.status_code, head.content) == (200, b"")
        empty = await client.get("/empty")
        assert (empty.status_code, empty.content) == (204, b"")
        async with client.stream("GET", "/stream") as streamed:
            lines = streamed.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 5) == "first"
            pause.set()
            assert await asyncio.wait_for(anext(lines), 5) == "second"

    writes = [w for recording in RECORDED for w in recording.writes]
    smalls = [w for w in writes if w.startswith(b"HTTP/1.1 200") and w.endswith(b"\r\n\r\nok")]
    assert len(smalls) == 3, writes  # head and body together, once per answer
    heads_alone = [w for w in writes if w.startswith(b"HTTP/1.1 ") and w.endswith(b"\r\n\r\n")]
    assert len(heads_alone) == 2, writes  # the HEAD answer and the 204: flushed, not lost
