"""The inbound hot path as plain ASGI, in front of the framework.

Provider webhooks are the one endpoint that must keep up with whatever providers send, so
`POST /in/{kind}/{public_id}` skips routing, dependency injection, the generic middleware
stack and the framework's own per-request work (`ChatgateApi.__call__` hands it here first),
and does only its job: read the bytes, authenticate, store, answer. It serves the
same `InboundGateway` as the documented FastAPI route, which remains for the OpenAPI
document and as the fallback for any other method. Under `chatgate serve` most webhooks do not
come through ASGI at all: the HTTP protocol hands them to `handle` (api/inbound_protocol.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from chatgate.api.errors import status_for
from chatgate.domain.errors import ChatgateError
from chatgate.observability.metrics import ApiMetrics
from chatgate.providers.base import NO_QUERY, InboundRequest
from chatgate.services.inbound_gateway import DUPLICATE, STORED, InboundGateway

log = logging.getLogger(__name__)
ROUTE = "/in/{kind}/{public_id}"
MAX_INBOUND_BYTES = 4 * 1024 * 1024


Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, body, headers


def _json(status: int, body: dict[str, object]) -> Answer:
    content_type = b"application/json" if status < 400 else b"application/problem+json"
    encoded = json.dumps(body, separators=(",", ":")).encode()
    return status, encoded, [(b"content-type", content_type), (b"content-length", str(len(encoded)).encode())]


# The two answers nearly every provider request gets, encoded once.
_STORED = _json(200, STORED.body)
_DUPLICATE = _json(200, DUPLICATE.body)
USUAL_ANSWERS = (_STORED, _DUPLICATE)  # the same objects every time (encoders may keep their bytes)


def inbound_target(scope: Scope) -> tuple[str, str] | None:
    """(kind, public_id) when `scope` is a provider webhook POST this path serves."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    return inbound_path_parts(scope["path"])


def inbound_path_parts(path: str) -> tuple[str, str] | None:
    """(kind, public_id) of a path `/in/{kind}/{public_id}`."""
    if not path.startswith("/in/"):
        return None
    parts = path.split("/")
    if len(parts) != 4 or not parts[2] or not parts[3]:
        return None
    return parts[2], parts[3]


Respond = Callable[[Answer], None]


class InboundFastPath:
    def __init__(self, *, gateway: InboundGateway, metrics: ApiMetrics) -> None:
        self.gateway = gateway
        self.metrics = metrics
        self._duration = metrics.request_duration.labels("POST", ROUTE)
        self._ok_total = metrics.request_total.labels("POST", ROUTE, "200")

    async def serve(self, scope: Scope, receive: Receive, send: Send, kind: str, public_id: str) -> None:
        started = time.perf_counter()
        status, body, headers = await self._handle(scope, receive, kind, public_id)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.count(status, started)

    def count(self, status: int, started: float) -> None:
        """The request metrics of an answer sent (`started`: `time.perf_counter()` on arrival)."""
        self._duration.observe(time.perf_counter() - started)
        if status == 200:
            self._ok_total.inc()
            return
        self.metrics.request_total.labels("POST", ROUTE, str(status)).inc()
        if status >= 400:
            self.metrics.request_error_total.labels("POST", ROUTE, str(status)).inc()

    def handle(self, kind: str, public_id: str, request: InboundRequest, respond: Respond) -> None:
        """Answer `request` by calling `respond` once: at once for a request refused, when its
        batch is stored for the usual one, or when `answer` ends for one that needs a coroutine.
        For an HTTP protocol that answers without an ASGI task (api/inbound_protocol.py); the
        caller counts the answer (`count`) once it is written."""
        try:
            if self.gateway.receive_then(
                kind, public_id, request, functools.partial(_stored_answer, respond)
            ):
                return
        except ChatgateError as exc:
            respond(_refused(exc))
            return
        except Exception:
            log.exception("inbound %s failed", kind)
            respond(_FAILED)
            return
        later = asyncio.ensure_future(self.answer(kind, public_id, request))
        later.add_done_callback(functools.partial(_answered, respond))

    async def answer(self, kind: str, public_id: str, request: InboundRequest) -> Answer:
        """The answer to an inbound request whose body has arrived."""
        try:
            outcome = await self.gateway.receive(kind, public_id, request)
        except ChatgateError as exc:
            return _refused(exc)
        except Exception:
            log.exception("inbound %s failed", kind)
            return _FAILED
        if outcome is STORED:
            return _STORED
        if outcome is DUPLICATE:
            return _DUPLICATE
        return _json(outcome.status, outcome.body)

    async def _handle(self, scope: Scope, receive: Receive, kind: str, public_id: str) -> Answer:
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body = message.get("body", b"")  # the usual: the whole body in one message
        else:
            chunks: list[bytes] = []
            size = 0
            while True:
                if message["type"] == "http.disconnect":
                    return _json(400, {"detail": "the client went away"})
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_INBOUND_BYTES:
                    return too_large()
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
                message = await receive()
            body = b"".join(chunks)
        if len(body) > MAX_INBOUND_BYTES:
            return too_large()
        # ASGI servers give header names lower-cased (the ASGI spec requires it).
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host") or "{}:{}".format(*scope.get("server", ("localhost", 80)))
        path = scope.get("root_path", "") + scope["path"]
        query: bytes = scope.get("query_string", b"")
        return await self.answer(
            kind, public_id, inbound_request(scope.get("scheme", "http"), host, path, query, headers, body)
        )


def inbound_request(
    scheme: str, host: str, path: str, query: bytes, headers: dict[str, str], body: bytes
) -> InboundRequest:
    """The provider's request as adapters see it (`headers`: names lower-cased)."""
    url = f"{scheme}://{host}{path}" + (f"?{query.decode('latin-1')}" if query else "")
    return InboundRequest("POST", url, headers, body, _query(query))


def _refused(exc: ChatgateError) -> Answer:
    status, title = status_for(exc)
    return _json(status, {"title": title, "status": status, "detail": exc.message, "code": exc.code})


_FAILED = _json(500, {"title": "Internal error", "status": 500, "detail": "the event was not stored; retry"})


def _stored_answer(respond: Respond, outcome: bool | BaseException) -> None:
    if outcome is True or outcome is False:
        respond(_STORED if outcome else _DUPLICATE)
    elif isinstance(outcome, ChatgateError):  # e.g. ServiceUnavailable: not stored, retry
        respond(_refused(outcome))
    else:
        log.error("inbound event failed", exc_info=outcome)
        respond(_FAILED)


def _answered(respond: Respond, answer: asyncio.Future[Answer]) -> None:
    # `answer` turns every error into an answer; cancelled (the server stopping), it has none.
    respond(_FAILED if answer.cancelled() else answer.result())


def too_large() -> Answer:
    return _json(413, {"detail": f"the body is larger than {MAX_INBOUND_BYTES} bytes"})


def _query(raw: bytes) -> Mapping[str, str]:
    return dict(parse_qsl(raw.decode("latin-1"))) if raw else NO_QUERY
