"""The control API under /sandbox/ (JSON): what tests and demos use to drive the simulated Telegram.

Errors are `{"error": "..."}` with 400 (malformed input), 401 (control token), 404 (no such bot,
chat or fault) or 504 (waiting for deliveries timed out).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatgate.sandbox.telegram_bot_api.objects import chat_full_info
from chatgate.sandbox.telegram_bot_api.state import StoredFile

if TYPE_CHECKING:
    from chatgate.sandbox.telegram_bot_api.app import SandboxBotApi

FILE_KINDS = frozenset({"photo", "document", "audio", "video", "voice", "sticker", "animation"})
MAX_BULK = 100_000
Endpoint = Callable[[Request], Awaitable[Response]]


class SandboxLookupError(LookupError):
    pass


def _bot_json(bot_id: int, token: str, username: str, first_name: str) -> dict[str, Any]:
    return {"id": bot_id, "token": token, "username": username, "first_name": first_name}


def _file_json(stored: StoredFile) -> dict[str, Any]:
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": stored.size,
        "file_name": stored.file_name,
        "mime_type": stored.mime_type,
        "kind": stored.kind,
    }


async def _json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ValueError("a JSON object body is required")
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise TypeError("the body must be a JSON object")
    return body


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer")
    return value


class _ControlApi:
    def __init__(self, sandbox: SandboxBotApi) -> None:
        self.sandbox = sandbox

    def guard(self, handler: Endpoint) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            expected = self.sandbox.control_token
            if expected is not None:
                given = request.headers.get("authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
                    return JSONResponse({"error": "the control API needs the sandbox control token"}, 401)
            try:
                return await handler(request)
            except LookupError as exc:  # SandboxBotApi.bot() and friends raise KeyError
                return JSONResponse({"error": str(exc.args[0]) if exc.args else "not found"}, 404)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)

        return endpoint

    def routes(self) -> list[Route]:
        table: list[tuple[str, Endpoint, str]] = [
            ("/sandbox/bots", self.create_bot, "POST"),
            ("/sandbox/bots/bulk", self.create_bots, "POST"),
            ("/sandbox/bots/{bot_id:int}", self.inspect_bot, "GET"),
            ("/sandbox/bots/{bot_id:int}", self.delete_bot, "DELETE"),
            ("/sandbox/bots/{bot_id:int}/revoke", self.revoke, "POST"),
            ("/sandbox/bots/{bot_id:int}/chats", self.define_chat, "POST"),
            ("/sandbox/bots/{bot_id:int}/chats/{chat_id}/messages", self.chat_messages, "GET"),
            ("/sandbox/bots/{bot_id:int}/updates", self.inject_update, "POST"),
            ("/sandbox/bots/{bot_id:int}/files", self.upload_file, "POST"),
            ("/sandbox/bots/{bot_id:int}/calls", self.calls, "GET"),
            ("/sandbox/faults", self.add_fault, "POST"),
            ("/sandbox/faults", self.list_faults, "GET"),
            ("/sandbox/faults", self.clear_faults, "DELETE"),
            ("/sandbox/faults/{fault_id:int}", self.remove_fault, "DELETE"),
            ("/sandbox/deliveries/wait", self.wait_deliveries, "POST"),
            ("/sandbox/reset", self.reset, "POST"),
        ]
        return [Route(path, self.guard(handler), methods=[verb]) for path, handler, verb in table]

    # -- bots ---------------------------------------------------------------------------------

    async def create_bot(self, request: Request) -> Response:
        body = await _json_body(request, required=False)
        unknown = set(body) - {"id", "username", "first_name", "token"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or ":" not in token or "/" in token):
            raise TypeError("token must look like <id>:<secret> and contain no '/'")
        username = body.get("username")
        first_name = body.get("first_name")
        if username is not None and not isinstance(username, str):
            raise TypeError("username must be a string")
        if first_name is not None and not isinstance(first_name, str):
            raise TypeError("first_name must be a string")
        bot = self.sandbox.create_bot(
            bot_id=_optional_int(body, "id"),
            username=username.lstrip("@") if username else None,
            first_name=first_name,
            token=token,
        )
        return JSONResponse(_bot_json(bot.id, bot.token, bot.username, bot.first_name), 201)

    async def create_bots(self, request: Request) -> Response:
        body = await _json_body(request)
        count = _optional_int(body, "count")
        if count is None or not 1 <= count <= MAX_BULK:
            raise ValueError(f"count must be between 1 and {MAX_BULK}")
        prefix = body.get("username_prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError("username_prefix must be a string")
        bots = self.sandbox.create_bots(count, username_prefix=prefix)
        return JSONResponse(
            {"bots": [{"id": b.id, "token": b.token, "username": b.username} for b in bots]}, 201
        )

    async def inspect_bot(self, request: Request) -> Response:
        with_calls = request.query_params.get("calls", "true").lower() not in ("0", "false")
        return JSONResponse(self.sandbox.inspect_bot(request.path_params["bot_id"], calls=with_calls))

    async def delete_bot(self, request: Request) -> Response:
        self.sandbox.delete_bot(request.path_params["bot_id"])
        return JSONResponse({"deleted": True})

    async def revoke(self, request: Request) -> Response:
        bot_id = request.path_params["bot_id"]
        token = self.sandbox.revoke_token(bot_id)
        return JSONResponse({"id": bot_id, "token": token})

    async def calls(self, request: Request) -> Response:
        wanted = request.query_params.get("method")
        bot = self.sandbox.bot(request.path_params["bot_id"])
        return JSONResponse(
            {
                "calls": [
                    c.as_json()
                    for c in bot.calls or ()
                    if wanted is None or c.method.lower() == wanted.lower()
                ]
            }
        )

    # -- chats, updates, files ----------------------------------------------------------------

    async def define_chat(self, request: Request) -> Response:
        chat = self.sandbox.define_chat(request.path_params["bot_id"], await _json_body(request))
        return JSONResponse({"chat": chat_full_info(chat), "bot_status": chat.status}, 201)

    async def chat_messages(self, request: Request) -> Response:
        bot_id = request.path_params["bot_id"]
        chat_id: int | str = str(request.path_params["chat_id"])
        if str(chat_id).lstrip("-").isdigit():
            chat_id = int(chat_id)
        return JSONResponse(self.sandbox.chat_messages(bot_id, chat_id))

    async def inject_update(self, request: Request) -> Response:
        result = self.sandbox.inject_update(request.path_params["bot_id"], await _json_body(request))
        return JSONResponse(result, 201)

    async def upload_file(self, request: Request) -> Response:
        bot_id = request.path_params["bot_id"]
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        data: bytes | None
        if content_type == "multipart/form-data":
            async with request.form() as form:
                part = form.get("file")
                if not isinstance(part, UploadFile):
                    raise TypeError('a multipart upload needs a "file" part')
                data = await part.read()
                kind = form.get("kind")
                file_name, mime_type, size = part.filename, part.content_type, None
        else:
            body = await _json_body(request)
            unknown = set(body) - {"content_base64", "size", "file_name", "mime_type", "kind"}
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
            encoded = body.get("content_base64")
            size = _optional_int(body, "size")
            if (encoded is None) == (size is None):
                raise ValueError("give exactly one of content_base64 or size")
            try:
                data = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
            except binascii.Error:
                raise ValueError("content_base64 is not valid base64") from None
            if encoded is not None and not isinstance(encoded, str):
                raise TypeError("content_base64 must be a string")
            if size is not None and size < 1:
                raise ValueError("size must be positive")
            kind, file_name, mime_type = body.get("kind"), body.get("file_name"), body.get("mime_type")
        if kind is not None and kind not in FILE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(sorted(FILE_KINDS))}")
        stored = self.sandbox.upload_file(
            bot_id,
            data,
            size=size,
            file_name=str(file_name) if file_name else None,
            mime_type=str(mime_type) if mime_type else None,
            kind=str(kind) if kind else None,
        )
        return JSONResponse(_file_json(stored), 201)

    # -- faults and deliveries ----------------------------------------------------------------

    async def add_fault(self, request: Request) -> Response:
        fault = self.sandbox.add_fault(**await _json_body(request))
        return JSONResponse(fault.as_json(), 201)

    async def list_faults(self, request: Request) -> Response:
        return JSONResponse({"faults": [f.as_json() for f in self.sandbox.faults.faults]})

    async def clear_faults(self, request: Request) -> Response:
        return JSONResponse({"deleted": self.sandbox.faults.clear()})

    async def remove_fault(self, request: Request) -> Response:
        if not self.sandbox.faults.remove(request.path_params["fault_id"]):
            raise SandboxLookupError(f"no fault {request.path_params['fault_id']}")
        return JSONResponse({"deleted": 1})

    async def wait_deliveries(self, request: Request) -> Response:
        body = await _json_body(request, required=False)
        timeout = body.get("timeout", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise TypeError("timeout must be a positive number of seconds")
        try:
            await asyncio.wait_for(self.sandbox.wait_for_deliveries(), float(timeout))
        except TimeoutError:
            return JSONResponse({"error": "webhook deliveries are still running", "done": False}, 504)
        pending = sum(b.pending_count() for b in self.sandbox.state.bots.values() if b.webhook is not None)
        return JSONResponse({"done": True, "pending_update_count": pending})

    async def reset(self, request: Request) -> Response:
        await self.sandbox.reset()
        return JSONResponse({"reset": True})


def control_routes(sandbox: SandboxBotApi) -> list[Route]:
    return _ControlApi(sandbox).routes()
