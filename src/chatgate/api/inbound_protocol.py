"""The HTTP protocol `chatgate serve` runs: provider webhooks answered without an ASGI task.

uvicorn serves each request through ASGI: a scope, a request-response cycle with its event,
a task running the app, `receive` and `send` messages. For the one endpoint that must keep up
with whatever providers send, that machinery cost about twice the gateway's own work per
request (docs/performance.md). Here `POST /in/{kind}/{public_id}` is recognised when its head
has been parsed; its body is collected in the protocol, and when it is complete the inbound
fast path (`InboundFastPath.handle`) authenticates it and submits it to the ingest writer; the
answer is written to the socket when the writer's batch is committed.

Everything else goes through uvicorn's ASGI path unchanged, as does a webhook whenever the
plain path would be wrong or is not worth it: a request pipelined behind one not yet answered
(answers must keep their order), `Expect: 100-continue`, a percent-encoded path, an upgrade,
a server with a root path or a concurrency limit. The answers are the same bytes either way.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from chatgate.api.http_protocol import HeadHoldingHttpToolsProtocol
from chatgate.api.inbound_fast import (
    MAX_INBOUND_BYTES,
    USUAL_ANSWERS,
    Answer,
    InboundFastPath,
    inbound_path_parts,
    inbound_request,
    too_large,
)


class _Signal:
    """What uvicorn's protocol sets on a cycle's event when the connection is lost; a webhook
    answered here has nobody waiting on it."""

    def set(self) -> None:
        return None


_NOBODY_WAITS = _Signal()


class _Webhook:
    """A webhook being answered in the protocol. It stands in for uvicorn's request-response
    cycle while it is the protocol's `cycle`: uvicorn reads `response_complete` (may the next
    request start?), sets `disconnected` and `keep_alive` (the connection lost, the server
    stopping) and its `message_event`."""

    __slots__ = (
        "chunks",
        "disconnected",
        "keep_alive",
        "kind",
        "path",
        "public_id",
        "query",
        "response_complete",
        "size",
        "started",
    )
    message_event = _NOBODY_WAITS

    def __init__(self, kind: str, public_id: str, path: str, query: bytes, keep_alive: bool) -> None:
        self.kind = kind
        self.public_id = public_id
        self.path = path
        self.query = query
        self.keep_alive = keep_alive
        self.started = time.perf_counter()
        self.chunks: list[bytes] = []
        self.size = 0
        self.response_complete = False
        self.disconnected = False


def webhook_target(url: bytes) -> tuple[str, str, str, bytes] | None:
    """(kind, public id, path, query) of a request target this protocol answers itself."""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        return None  # uvicorn's own path answers it as it would any other
    raw_path: bytes = parsed.path
    if not raw_path.startswith(b"/in/") or b"%" in raw_path:  # percent-encoded: uvicorn decodes it
        return None
    try:
        path = raw_path.decode("ascii")
    except UnicodeDecodeError:
        return None
    target = inbound_path_parts(path)
    if target is None:
        return None
    return target[0], target[1], path, parsed.query or b""


def inbound_of(app: Any) -> InboundFastPath | None:
    """The inbound fast path of the chatgate app inside uvicorn's middleware (proxy headers, …)."""
    for _ in range(16):
        inbound = getattr(app, "inbound", None)
        if isinstance(inbound, InboundFastPath):
            return inbound
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class _Encoded:
    """Response bytes: the usual answers' headers and bodies encoded once, the default headers
    (the date) once a second."""

    def __init__(self) -> None:
        self._defaults: tuple[list[tuple[bytes, bytes]], bytes] = ([], b"")
        self._usual = {id(answer): _tail(answer) for answer in USUAL_ANSWERS}

    def response(self, answer: Answer, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
        known = self._defaults
        if known[0] is not default_headers:  # uvicorn makes a new list each second (the date)
            known = self._defaults = (default_headers, _header_lines(default_headers))
        # The usual answers live as long as the module: no other object can have their ids.
        tail = self._usual.get(id(answer)) or _tail(answer)
        if keep_alive:
            return b"".join((STATUS_LINE[answer[0]], known[1], tail))
        return b"".join((STATUS_LINE[answer[0]], known[1], b"connection: close\r\n", tail))


def _tail(answer: Answer) -> bytes:
    _, body, headers = answer
    return _header_lines(headers) + b"\r\n" + body


def _header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


_ENCODED = _Encoded()


class InboundHttpProtocol(HeadHoldingHttpToolsProtocol):
    """uvicorn's httptools protocol (one write per response), answering provider webhooks itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain = self.limit_concurrency is None and not self.root_path
        self._inbound = inbound_of(self.app) if plain else None
        self._webhook: _Webhook | None = None  # the webhook being received, if any

    def on_message_begin(self) -> None:
        self._webhook = None
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        webhook = self._recognise()
        if webhook is None:
            super().on_headers_complete()
            return
        self._webhook = webhook
        self.cycle = webhook  # type: ignore[assignment] # uvicorn's checks read what they need of it

    def _recognise(self) -> _Webhook | None:
        if self._inbound is None or self.expect_100_continue or self.parser.get_method() != b"POST":
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # pipelined behind an unanswered request: uvicorn queues it, in order
        if self.parser.should_upgrade():
            return None
        target = webhook_target(self.url)
        if target is None:
            return None
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        return _Webhook(*target, keep_alive=keep_alive)

    def on_body(self, body: bytes) -> None:
        webhook = self._webhook
        if webhook is None:
            super().on_body(body)
            return
        if webhook.response_complete:
            return  # refused as too large: the rest is not read
        webhook.size += len(body)
        if webhook.size > MAX_INBOUND_BYTES:
            webhook.keep_alive = False  # the rest of the body would be read as the next request
            self._respond(webhook, too_large())
            return
        webhook.chunks.append(body)

    def on_message_complete(self) -> None:
        webhook = self._webhook
        if webhook is None:
            super().on_message_complete()
            return
        self._webhook = None
        if webhook.response_complete or self._inbound is None:
            return
        chunks = webhook.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers}  # names lower-cased
        host = headers.get("host") or "{}:{}".format(*(self.server or ("localhost", 80)))
        request = inbound_request(self.scheme or "http", host, webhook.path, webhook.query, headers, body)
        self._inbound.handle(
            webhook.kind, webhook.public_id, request, functools.partial(self._respond, webhook)
        )

    def _respond(self, webhook: _Webhook, answer: Answer) -> None:
        if webhook.response_complete:
            return
        webhook.response_complete = True
        if webhook.disconnected or self.transport.is_closing():
            return  # stored all the same: the provider's retry meets a duplicate
        self.transport.write(_ENCODED.response(answer, self.server_state.default_headers, webhook.keep_alive))
        if not webhook.keep_alive:
            self.transport.close()
        if self._inbound is not None:
            self._inbound.count(answer[0], webhook.started)
        self.on_response_complete()  # the next pipelined request, or the keep-alive timer
