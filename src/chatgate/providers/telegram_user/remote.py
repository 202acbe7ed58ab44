"""`AccountClient` against the accounts sandbox (`chatgate.sandbox.telegram_accounts`) over HTTP:
chatgate processes run Telegram user accounts on a `FakeTelegram` living in another process
(demo and tests; `CHATGATE_TELEGRAM_ACCOUNT_SANDBOX_URL`).

After `connect()` a background task long-polls the connection's updates (also without a handler:
the poll is what tells the sandbox this process is alive), hands them to the handler in order and
acknowledges them with the next poll. `session_string()` and `update_state()` are the values the
sandbox returned with the last answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from datetime import datetime
from typing import Any

import aiohttp

from chatgate.domain import errors as domain_errors
from chatgate.domain.errors import ChatgateError, ProviderRateLimited, RateLimited, TransientProviderError
from chatgate.domain.messages import ConversationKind
from chatgate.providers.telegram_user import parsing
from chatgate.providers.telegram_user.client import (
    AccountClient,
    AccountInfo,
    AccountUpdateHandler,
    Dialog,
    PeerRef,
    QrLogin,
    RawAccountUpdate,
    SentCode,
    SentMessage,
)
from chatgate.providers.telegram_user.errors import PasswordNeeded, QrLoginTimeout
from chatgate.services.account_clients import AccountClientFactory, AccountSpec

log = logging.getLogger(__name__)

POLL_SECONDS = 10.0


def _error_classes() -> dict[str, type[ChatgateError]]:
    found: dict[str, type[ChatgateError]] = {}
    for value in vars(domain_errors).values():
        if isinstance(value, type) and issubclass(value, ChatgateError):
            found.setdefault(value.code, value)
    found[QrLoginTimeout.code] = QrLoginTimeout
    return found


ERRORS = _error_classes()


def rebuild_error(body: dict[str, Any]) -> ChatgateError:
    """Our typed error from the sandbox's `{code, message, details, retry_after?}`."""
    code, message = str(body.get("code") or "error"), str(body.get("message") or "error")
    details = body.get("details") or {}
    if code == "not_connected":  # the sandbox dropped the connection
        return TransientProviderError(message)
    if code == PasswordNeeded.code:
        return PasswordNeeded(message, hint=details.get("hint"))
    cls = ERRORS.get(code, ChatgateError)
    if cls in (RateLimited, ProviderRateLimited):
        return cls(message, retry_after=float(body.get("retry_after") or 1.0))
    try:
        error = cls(message, details=details)
    except TypeError:
        error = ChatgateError(message, details=details)
        error.code = code
    return error


def _account(data: dict[str, Any]) -> AccountInfo:
    return AccountInfo(**data)


def _dialog(data: dict[str, Any]) -> Dialog:
    return Dialog(
        **{**data, "kind": ConversationKind(data["kind"]), "admin_rights": tuple(data["admin_rights"])}
    )


class RemoteAccountClient:
    """One connection of the accounts sandbox at `base_url` (see the module docstring)."""

    def __init__(self, base_url: str, spec: AccountSpec, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.spec = spec
        self.timeout = timeout
        self._session_string = spec.session or ""
        self._update_state = spec.update_state
        self._id: str | None = None
        self._http: aiohttp.ClientSession | None = None
        self._handler: AccountUpdateHandler | None = None
        self._poller: asyncio.Task[None] | None = None

    # plumbing --------------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._http

    def _remember(self, body: dict[str, Any]) -> None:
        if "session_string" in body:
            self._session_string = str(body["session_string"] or "")
        if "update_state" in body and body["update_state"] is not None:
            self._update_state = body["update_state"]

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self._session().request(method, self.base_url + path, **kwargs) as response:
                if response.status == 204:
                    return None
                body: dict[str, Any] = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientProviderError(
                f"the accounts sandbox is unreachable: {type(exc).__name__}"
            ) from None
        self._remember(body)
        if "error" in body:
            raise rebuild_error(body["error"])
        return body

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._id is None:
            raise TransientProviderError("not connected to Telegram")
        body = await self._request(
            "POST", f"/connections/{self._id}/call/{method}", json={"args": list(args), "kwargs": kwargs}
        )
        return body["result"]

    async def _poll(self) -> None:
        ack = 0
        while self._id is not None:
            cid = self._id
            try:
                async with self._session().get(
                    f"{self.base_url}/connections/{cid}/events",
                    params={"timeout": str(POLL_SECONDS), "ack": str(ack)},
                    timeout=aiohttp.ClientTimeout(total=POLL_SECONDS + 20),
                ) as response:
                    if response.status == 404:
                        return  # the sandbox dropped this connection
                    body: dict[str, Any] = await response.json()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("polling the accounts sandbox failed: %s", type(exc).__name__)
                await asyncio.sleep(1)
                continue
            self._remember(body)
            for event in body.get("events") or []:
                if self._handler is not None:
                    payload = event["payload"]
                    try:
                        await self._handler(
                            RawAccountUpdate(event["key"], payload), parsing.parse_payload(payload)
                        )
                    except Exception:
                        log.exception("an account update handler failed")
                ack = int(event["seq"])

    # AccountClient -----------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._id is not None:
            return
        body = await self._request(
            "POST",
            "/connections",
            json={"session": self.spec.session, "update_state": self.spec.update_state},
        )
        self._id = str(body["id"])
        self._poller = asyncio.create_task(self._poll(), name=f"sandbox-account-{self._id}")

    async def disconnect(self) -> None:
        cid, self._id = self._id, None
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(BaseException):
                await poller
        if cid is not None:
            with contextlib.suppress(ChatgateError):
                await self._request("DELETE", f"/connections/{cid}")
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def is_authorized(self) -> bool:
        return bool(await self._call("is_authorized"))

    async def send_code(self, phone: str) -> SentCode:
        return SentCode(**await self._call("send_code", phone))

    async def resend_code(self, phone: str, phone_code_hash: str) -> SentCode:
        return SentCode(**await self._call("resend_code", phone, phone_code_hash))

    async def sign_in_code(self, phone: str, code: str, phone_code_hash: str) -> AccountInfo:
        return _account(await self._call("sign_in_code", phone, code, phone_code_hash))

    async def sign_in_password(self, password: str) -> AccountInfo:
        return _account(await self._call("sign_in_password", password))

    async def qr_login(self) -> QrLogin:
        raise domain_errors.InvalidInput("QR login is not supported by the accounts sandbox: use a code")

    async def get_me(self) -> AccountInfo:
        return _account(await self._call("get_me"))

    def session_string(self) -> str:
        return self._session_string

    def update_state(self) -> dict[str, Any] | None:
        return self._update_state

    async def log_out(self) -> None:
        await self._call("log_out")
        self._session_string = ""
        await self.disconnect()

    async def send_message(
        self,
        peer: int | str,
        text: str,
        *,
        reply_to: int | None = None,
        file: bytes | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> SentMessage:
        result = await self._call(
            "send_message",
            peer,
            text,
            reply_to=reply_to,
            file=base64.b64encode(file).decode() if file is not None else None,
            file_name=file_name,
            mime_type=mime_type,
        )
        return SentMessage(
            int(result["chat_id"]), int(result["message_id"]), datetime.fromisoformat(result["date"])
        )

    async def mark_read(self, peer: int | str, max_id: int) -> None:
        await self._call("mark_read", peer, max_id)

    async def resolve(self, recipient: str) -> PeerRef:
        data = await self._call("resolve", recipient)
        return PeerRef(**{**data, "kind": ConversationKind(data["kind"])})

    async def dialogs(self, limit: int | None = 100) -> list[Dialog]:
        return [_dialog(d) for d in await self._call("dialogs", limit)]

    async def admin_channels(self) -> list[Dialog]:
        return [_dialog(d) for d in await self._call("admin_channels")]

    def on_event(self, handler: AccountUpdateHandler) -> None:
        self._handler = handler


def remote_factory(base_url: str) -> AccountClientFactory:
    """The Container's `account_clients` when `telegram_account_sandbox_url` is set."""

    def make(spec: AccountSpec) -> AccountClient:
        return RemoteAccountClient(base_url, spec)

    return make
