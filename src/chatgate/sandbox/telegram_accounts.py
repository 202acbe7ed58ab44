"""One `FakeTelegram` over HTTP JSON, so chatgate processes other than the test's can run Telegram
user accounts against it (`CHATGATE_TELEGRAM_ACCOUNT_SANDBOX_URL`, client:
`providers.telegram_user.remote.RemoteAccountClient`).

Client endpoints (one "connection" is one `FakeAccountClient` living in this process):

* `POST /connections {session, update_state?}` → `{id, session_string, update_state}`: a client
  on that session, connected (catch-up updates are queued for the events endpoint);
* `POST /connections/{id}/call/{method} {args, kwargs}` → `{result, session_string,
  update_state}` or `{error: {code, message, details, retry_after?}, …}` (status 200 either way);
* `GET /connections/{id}/events?timeout=S&ack=N` → `{events: [{seq, key, payload}], update_state}`:
  a long poll; `ack` confirms every event up to `seq` N was handled. `update_state` only ever
  covers acknowledged events (the client's handler "finished" them);
* `DELETE /connections/{id}`: disconnect.

Like a TCP connection to Telegram, a connection dies with its process: a client that drops a
long poll (its process was killed) is disconnected at once, and one that has not polled for
`idle_seconds` on the next request.

Control endpoints for tests: `POST /sandbox/accounts {phone, first_name?, username?, password?}`,
`POST /sandbox/users {first_name, username?, phone?}` → `{id}`, `POST /sandbox/messages
{to_phone, from_user_id, text}` → `{chat_id, message_id}`, `GET /sandbox/code?phone=…`,
`GET /sandbox/state` → `{connections: {session: live clients}, open, duplicated_sessions}`.
QR login is not supported over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import enum
import itertools
import json
import time
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.domain.errors import ChatgateError
from chatgate.domain.inbound import ProviderEvent
from chatgate.providers.telegram_user.client import RawAccountUpdate
from chatgate.providers.telegram_user.fake import FakeAccountClient, FakeTelegram, FakeUser

CALLABLE = frozenset(
    {
        "is_authorized",
        "send_code",
        "resend_code",
        "sign_in_code",
        "sign_in_password",
        "get_me",
        "session_string",
        "log_out",
        "send_message",
        "mark_read",
        "resolve",
        "dialogs",
        "admin_channels",
        "update_state",
    }
)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status_code=status, media_type="application/json")


def error_body(exc: ChatgateError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message, "details": _jsonable(exc.details)}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        body["retry_after"] = retry_after
    return body


@dataclasses.dataclass
class _Pending:
    seq: int
    key: str
    payload: dict[str, Any]
    state_before: dict[str, Any] | None  # the client's update_state before this update


class _Connection:
    def __init__(self, cid: str, session: str | None, client: FakeAccountClient) -> None:
        self.id = cid
        self.session = session
        self.client = client
        self.pending: list[_Pending] = []  # queued or delivered, not acknowledged
        self.delivered = 0  # highest seq handed out
        self.wake = asyncio.Event()
        self.polling = 0
        self.last_seen = time.monotonic()
        self.closed = False
        self._seq = itertools.count(1)

    async def handle(self, update: RawAccountUpdate, _: list[ProviderEvent]) -> None:
        self.pending.append(_Pending(next(self._seq), update.key, update.payload, self.client.update_state()))
        self.wake.set()

    def ack(self, upto: int) -> None:
        self.pending = [p for p in self.pending if p.seq > upto]

    def update_state(self) -> dict[str, Any] | None:
        """Where the remote handler stands: before the oldest unacknowledged event."""
        if self.pending:
            return self.pending[0].state_before
        return self.client.update_state()

    def session_string(self) -> str:
        return self.client.session_string()


class SandboxTelegramAccounts:
    """The ASGI app (`.app`) around one `FakeTelegram` (`.fake`)."""

    def __init__(self, fake: FakeTelegram | None = None, *, idle_seconds: float = 30.0) -> None:
        self.fake = fake or FakeTelegram()
        self.idle_seconds = idle_seconds
        self.connections: dict[str, _Connection] = {}
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/connections", self._connect, methods=["POST"]),
                Route("/connections/{cid}/call/{method}", self._call, methods=["POST"]),
                Route("/connections/{cid}/events", self._events, methods=["GET"]),
                Route("/connections/{cid}", self._disconnect, methods=["DELETE"]),
                Route("/sandbox/accounts", self._add_account, methods=["POST"]),
                Route("/sandbox/users", self._add_user, methods=["POST"]),
                Route("/sandbox/messages", self._deliver, methods=["POST"]),
                Route("/sandbox/code", self._code, methods=["GET"]),
                Route("/sandbox/state", self._state, methods=["GET"]),
            ]
        )

    # --- connections ------------------------------------------------------------------------

    async def _drop(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.connections.pop(conn.id, None)
        conn.wake.set()
        with contextlib.suppress(Exception):
            await conn.client.disconnect()

    async def _reap(self) -> None:
        """Connections whose process went away between two polls."""
        now = time.monotonic()
        for conn in list(self.connections.values()):
            if conn.polling == 0 and now - conn.last_seen > self.idle_seconds:
                await self._drop(conn)

    def _envelope(self, conn: _Connection, **body: Any) -> Response:
        return _json({**body, "session_string": conn.session_string(), "update_state": conn.update_state()})

    async def _connect(self, request: Request) -> Response:
        await self._reap()
        body = await request.json()
        session = body.get("session") or None
        client = FakeAccountClient(self.fake, session, update_state=body.get("update_state"))
        conn = _Connection(str(next(self._ids)), session, client)
        client.on_event(conn.handle)
        self.connections[conn.id] = conn
        try:
            await client.connect()
        except ChatgateError as exc:
            self.connections.pop(conn.id, None)
            return _json({"error": error_body(exc)})
        return self._envelope(conn, id=conn.id)

    def _find(self, request: Request) -> _Connection | None:
        conn = self.connections.get(request.path_params["cid"])
        if conn is not None:
            conn.last_seen = time.monotonic()
        return conn

    async def _call(self, request: Request) -> Response:
        conn = self._find(request)
        if conn is None:
            return _json({"error": {"code": "not_connected", "message": "no such connection"}}, 404)
        method = request.path_params["method"]
        if method not in CALLABLE:
            message = f"{method} is not supported by the accounts sandbox (QR login needs the live socket)"
            return _json({"error": {"code": "invalid_input", "message": message, "details": {}}})
        body = await request.json()
        args, kwargs = list(body.get("args") or []), dict(body.get("kwargs") or {})
        if isinstance(kwargs.get("file"), str):
            kwargs["file"] = base64.b64decode(kwargs["file"])
        try:
            result = getattr(conn.client, method)(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
        except ChatgateError as exc:
            return self._envelope(conn, error=error_body(exc))
        return self._envelope(conn, result=_jsonable(result))

    async def _events(self, request: Request) -> Response:
        conn = self._find(request)
        if conn is None:
            return _json({"error": {"code": "not_connected", "message": "no such connection"}}, 404)
        conn.ack(int(request.query_params.get("ack", "0")))
        timeout = min(float(request.query_params.get("timeout", "10")), 60.0)

        async def gone() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        conn.polling += 1
        watcher = asyncio.create_task(gone())
        try:
            deadline = time.monotonic() + timeout
            while not conn.closed:
                fresh = [p for p in conn.pending if p.seq > conn.delivered]
                if fresh:
                    conn.delivered = fresh[-1].seq
                    events = [{"seq": p.seq, "key": p.key, "payload": p.payload} for p in fresh]
                    return self._envelope(conn, events=events)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                conn.wake.clear()
                waiter = asyncio.create_task(conn.wake.wait())
                done, _ = await asyncio.wait({waiter, watcher}, timeout=left, return_when="FIRST_COMPLETED")
                waiter.cancel()
                if watcher in done:  # the client's process is gone: so is its connection
                    await self._drop(conn)
                    return Response(status_code=499)
            if conn.closed:
                return _json({"error": {"code": "not_connected", "message": "disconnected"}}, 404)
            return self._envelope(conn, events=[])
        finally:
            watcher.cancel()
            conn.polling -= 1
            conn.last_seen = time.monotonic()

    async def _disconnect(self, request: Request) -> Response:
        conn = self.connections.get(request.path_params["cid"])
        if conn is not None:
            await self._drop(conn)
        return Response(status_code=204)

    # --- control ----------------------------------------------------------------------------

    async def _add_account(self, request: Request) -> Response:
        body = await request.json()
        user = self.fake.add_account(
            body["phone"],
            body.get("first_name", "Ada"),
            username=body.get("username"),
            password=body.get("password"),
        )
        return _json({"id": user.id})

    async def _add_user(self, request: Request) -> Response:
        body = await request.json()
        user = self.fake.add_user(body["first_name"], username=body.get("username"), phone=body.get("phone"))
        return _json({"id": user.id})

    def _user(self, user_id: int) -> FakeUser:
        return self.fake._users[user_id]

    async def _deliver(self, request: Request) -> Response:
        body = await request.json()
        delivery = await self.fake.deliver_message(
            body["to_phone"], self._user(int(body["from_user_id"])), body.get("text", "")
        )
        return _json({"chat_id": delivery.chat_id, "message_id": delivery.message_id})

    async def _code(self, request: Request) -> Response:
        return _json({"code": self.fake.last_code(request.query_params["phone"])})

    async def _state(self, _: Request) -> Response:
        await self._reap()
        sessions: dict[str, int] = {}
        for conn in self.connections.values():
            session = conn.session_string()
            if session and session not in sessions:
                sessions[session] = self.fake.connections(session)
        return _json(
            {
                "connections": sessions,
                "open": len(self.connections),
                "duplicated_sessions": self.fake.duplicated_sessions,
            }
        )
