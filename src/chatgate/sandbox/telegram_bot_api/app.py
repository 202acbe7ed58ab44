"""SandboxBotApi: the Bot API routes, the file downloads and the control API in one Starlette app."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from chatgate.sandbox.specs import TELEGRAM_BOT_API
from chatgate.sandbox.telegram_bot_api import updates
from chatgate.sandbox.telegram_bot_api.chats import build_chat
from chatgate.sandbox.telegram_bot_api.control import control_routes
from chatgate.sandbox.telegram_bot_api.delivery import WebhookDelivery
from chatgate.sandbox.telegram_bot_api.errors import BotApiError, bad_request, not_found, unauthorized
from chatgate.sandbox.telegram_bot_api.faults import Fault, FaultSet
from chatgate.sandbox.telegram_bot_api.methods import BotApiMethods, MethodOptions
from chatgate.sandbox.telegram_bot_api.objects import webhook_info
from chatgate.sandbox.telegram_bot_api.spec import load_spec
from chatgate.sandbox.telegram_bot_api.state import (
    FIRST_BOT_ID,
    Bot,
    CallRecord,
    ChatRecord,
    SandboxState,
    StoredFile,
)
from chatgate.sandbox.telegram_bot_api.validation import UploadedFile, Validator

logger = logging.getLogger("chatgate.sandbox.telegram")
_MAX_FORM_FILES = 100
_MAX_FORM_FIELDS = 1000


async def read_parameters(request: Request) -> tuple[dict[str, str], dict[str, Any], dict[str, UploadedFile]]:
    """(text parameters, JSON parameters, uploaded files) of a Bot API request, merged from the
    query string and a JSON, url-encoded or multipart body."""
    text = dict(request.query_params)
    values: dict[str, Any] = {}
    files: dict[str, UploadedFile] = {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("can't parse JSON object")
            values = body
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.form(max_files=_MAX_FORM_FILES, max_fields=_MAX_FORM_FIELDS)
        except HTTPException as exc:
            raise bad_request(f"can't parse request body: {exc.detail}") from None
        try:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files[key] = UploadedFile(
                        key,
                        value.filename or key,
                        value.content_type or "application/octet-stream",
                        await value.read(),
                    )
                else:
                    text[key] = value
        finally:
            await form.close()
    return text, values, files


def _loggable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: (
            {"file_name": value.file_name, "content_type": value.content_type, "size": value.size}
            if isinstance(value, UploadedFile)
            else value
        )
        for key, value in params.items()
    }


class SandboxBotApi:
    """A simulated Telegram Bot API server holding every bot in memory; `.app` (or the instance) is ASGI.

    Options: `webhook_timeout` (seconds per webhook POST), `webhook_retries` (attempts per update
    before it is left pending), `webhook_retry_delay` (first pause between attempts, doubled each
    time), `clock` (Unix time for message dates and webhook errors), `control_token` (when set,
    the control API wants `Authorization: Bearer <it>`), `strict_webhook_urls` (Telegram's
    HTTPS-and-ports rule for setWebhook; off by default so tests can use http://127.0.0.1),
    `fetch_url_files` (download http(s) URLs given as files, as Telegram does; off: accept them
    unseen as empty files), `call_log_limit` and `message_history_limit` (per bot / per chat).
    """

    def __init__(
        self,
        *,
        webhook_timeout: float = 10.0,
        webhook_retries: int = 3,
        webhook_retry_delay: float = 0.2,
        clock: Callable[[], float] = time.time,
        control_token: str | None = None,
        strict_webhook_urls: bool = False,
        fetch_url_files: bool = True,
        call_log_limit: int = 1000,
        message_history_limit: int = 1000,
        first_bot_id: int = FIRST_BOT_ID,
        spec_path: Path = TELEGRAM_BOT_API,
    ) -> None:
        self.spec = load_spec(spec_path)
        self.validator = Validator(self.spec)
        self.clock = clock
        self.control_token = control_token
        self.call_log_limit = call_log_limit
        self.message_history_limit = message_history_limit
        self._first_bot_id = first_bot_id
        self.state = SandboxState(first_bot_id)
        self.faults = FaultSet()
        self.delivery = WebhookDelivery(
            clock=clock, timeout=webhook_timeout, retries=webhook_retries, retry_delay=webhook_retry_delay
        )
        self.methods = BotApiMethods(
            self.spec,
            self.state,
            self.delivery,
            MethodOptions(clock, message_history_limit, fetch_url_files, strict_webhook_urls),
        )
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._bot_api, methods=["GET", "POST"]),
                Route("/file/bot{token}/{file_path:path}", self._download, methods=["GET"]),
                *control_routes(self),
            ],
            lifespan=self._lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.aclose()

    # -- Python API (the control endpoints call these) ------------------------------------------

    def bot(self, bot_id: int) -> Bot:
        bot = self.state.bots.get(bot_id)
        if bot is None:
            raise KeyError(f"no bot {bot_id}")
        return bot

    def create_bot(
        self,
        *,
        bot_id: int | None = None,
        username: str | None = None,
        first_name: str | None = None,
        token: str | None = None,
    ) -> Bot:
        return self.state.create_bot(bot_id=bot_id, username=username, first_name=first_name, token=token)

    def create_bots(self, count: int, *, username_prefix: str | None = None) -> list[Bot]:
        bots = []
        for _ in range(count):
            bot = self.state.create_bot()
            if username_prefix:
                bot.username = f"{username_prefix}{bot.id}_bot"
            bots.append(bot)
        return bots

    def revoke_token(self, bot_id: int) -> str:
        return self.state.revoke(self.bot(bot_id))

    def delete_bot(self, bot_id: int) -> None:
        self.state.delete_bot(self.bot(bot_id))

    def define_chat(self, bot_id: int, description: Mapping[str, Any]) -> ChatRecord:
        return build_chat(self.spec, self.bot(bot_id), description)

    def inject_update(self, bot_id: int, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update (getUpdates) or deliver it to the webhook: {"update_id", "delivery"}."""
        bot = self.bot(bot_id)
        prepared, kind = updates.prepare_update(
            bot, update, self.spec.update_types, now=self.clock(), history_limit=self.message_history_limit
        )
        route = updates.enqueue(bot, prepared, kind)
        self.delivery.kick(bot)
        return {"update_id": prepared["update_id"], "delivery": route, "update": prepared}

    def upload_file(
        self,
        bot_id: int,
        data: bytes | None,
        *,
        size: int | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
        kind: str | None = None,
    ) -> StoredFile:
        bot = self.bot(bot_id)
        return self.state.add_file(
            bot.id, kind=kind, data=data, size=size, file_name=file_name, mime_type=mime_type
        )

    def add_fault(self, **fields: Any) -> Fault:
        """See faults.fault_from_json: kind ("429", "5xx", "403", "slow", "error"), bot_id, method,
        chat_id, times (None: until removed), retry_after, status, description, parameters, delay."""
        return self.faults.add(fields)

    def inspect_bot(self, bot_id: int, *, calls: bool = True) -> dict[str, Any]:
        bot = self.bot(bot_id)
        webhook = None
        if bot.webhook is not None:
            webhook = {
                **webhook_info(bot.webhook, bot.pending_count(), bot.allowed_updates),
                "secret_token": bot.webhook.secret_token,
            }
        return {
            "id": bot.id,
            "username": bot.username,
            "first_name": bot.first_name,
            "webhook": webhook,
            "allowed_updates": list(bot.allowed_updates) if bot.allowed_updates is not None else None,
            "pending_update_count": bot.pending_count(),
            "pending_updates": list(bot.updates or ()),
            "chats": sorted(bot.chats or ()),
            "calls": [c.as_json() for c in bot.calls or ()] if calls else [],
        }

    def chat_messages(self, bot_id: int, chat_id: int | str) -> dict[str, Any]:
        chat = self.bot(bot_id).find_chat(chat_id)
        if chat is None:
            raise KeyError(f"bot {bot_id} knows no chat {chat_id}")
        return {
            "chat": chat.short(),
            "messages": [
                {"message_id": number, "outgoing": s.outgoing, "deleted": s.deleted, "message": s.message}
                for number, s in chat.messages.items()
            ],
        }

    async def wait_for_deliveries(self) -> None:
        """Until every webhook delivery started so far has succeeded or given up
        (bound it with `asyncio.timeout`)."""
        await self.delivery.wait()

    async def reset(self) -> None:
        await self.delivery.close()
        self.state = SandboxState(self._first_bot_id)
        self.methods.state = self.state
        self.faults.clear()

    async def aclose(self) -> None:
        await self.delivery.close()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _bot_api(self, request: Request) -> Response:
        called_as = str(request.path_params["method"])
        method = self.spec.method(called_as)
        if method is None:
            return _error(not_found())
        bot = self.state.by_token.get(str(request.path_params["token"]))
        if bot is None:
            return _error(unauthorized())
        logged: dict[str, Any] = {}
        try:
            text, values, files = await read_parameters(request)
            logged = _loggable({**text, **values, **files})
            params = self.validator.validate_call(method, text, values, files)
            logged = _loggable(params)
            await self._apply_faults(bot, method.name, params)
            result, description = await self.methods.call(bot, method.name, params)
        except BotApiError as exc:
            bot.log_call(
                CallRecord(method.name, called_as, logged, self.clock(), False, exc.code, exc.description),
                self.call_log_limit,
            )
            return _error(exc)
        except Exception:
            logger.exception("sandbox Bot API failure in %s for bot %s", method.name, bot.id)
            failure = BotApiError(500, "Internal Server Error")
            bot.log_call(
                CallRecord(method.name, called_as, logged, self.clock(), False, 500, failure.description),
                self.call_log_limit,
            )
            return _error(failure)
        bot.log_call(CallRecord(method.name, called_as, logged, self.clock(), True), self.call_log_limit)
        body: dict[str, Any] = {"ok": True, "result": result}
        if description:
            body["description"] = description
        return JSONResponse(body)

    async def _apply_faults(self, bot: Bot, method: str, params: Mapping[str, Any]) -> None:
        """Sleep for the `slow` faults this call meets, then raise the error fault it meets, if any."""
        hit = self.faults.take(bot.id, method, params)
        for fault in hit:
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
        for fault in hit:
            error = fault.error()
            if error is not None:
                raise error

    async def _download(self, request: Request) -> Response:
        bot = self.state.by_token.get(str(request.path_params["token"]))
        if bot is None:
            return _error(unauthorized())
        stored = self.state.by_path.get(str(request.path_params["file_path"]))
        if stored is None or stored.bot_id != bot.id:
            return _error(not_found())
        return Response(stored.content(), media_type=stored.mime_type or "application/octet-stream")


def _error(exc: BotApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.code)


def create_app(**options: Any) -> Starlette:
    """A fresh, empty sandbox as an ASGI app (e.g. for `uvicorn --factory`)."""
    return SandboxBotApi(**options).app
