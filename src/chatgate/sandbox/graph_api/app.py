"""`SandboxGraphApi`: the simulated WhatsApp Cloud API (see the package docstring)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatgate.sandbox.graph_api import payloads
from chatgate.sandbox.graph_api.payloads import digits, graph_error
from chatgate.sandbox.graph_api.spec import send_message_problems
from chatgate.sandbox.graph_api.state import (
    WINDOW_MODES,
    WINDOW_SECONDS,
    Call,
    Delivery,
    Fault,
    Number,
    SentMessage,
    StoredMedia,
)

_VERSION = re.compile(r"v\d+\.\d+")
DEFAULT_FIELDS = ("display_phone_number", "verified_name", "quality_rating")
OPTIONAL_FIELDS = ("name_status", "code_verification_status", "platform_type", "throughput")
MAX_UPLOAD = 100 * 1024 * 1024
MEDIA_PATH = "/whatsapp_business/attachments/"
FREE_FORM_EXEMPT = frozenset({"template"})  # message types allowed outside the 24-hour window

Handler = Callable[[Request, Call], Awaitable[Response]]


class _Refused(Exception):
    """Answer with a Graph error."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.status = status
        self.body = body


def _invalid(details: str, message: str = "(#100) Invalid parameter") -> _Refused:
    return _Refused(400, graph_error(100, message, details=details))


def _no_object(object_id: str, method: str) -> _Refused:
    return _Refused(
        400,
        graph_error(
            100,
            f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded "
            "due to missing permissions, or does not support this operation.",
            error_type="GraphMethodException",
            subcode=33,
        ),
    )


def _check_version(request: Request) -> None:
    if request.url.path != MEDIA_PATH and not _VERSION.fullmatch(request.path_params.get("version", "")):
        raise _Refused(400, graph_error(2500, f"Unknown path components: {request.url.path}"))


def _control_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class SandboxGraphApi:
    """The simulated Graph API; serve `.app` (ASGI) and call `aclose()` when done."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.numbers: dict[str, Number] = {}
        self.media: dict[str, StoredMedia] = {}
        self.messages: list[SentMessage] = []
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self.faults: list[Fault] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.app = Starlette(routes=self._routes())

    # Python control API (the HTTP control endpoints call these)

    def add_number(
        self,
        phone_number_id: str,
        *,
        display_phone_number: str,
        access_token: str,
        app_secret: str,
        waba_id: str,
        **settings: Any,
    ) -> Number:
        number = Number(phone_number_id, display_phone_number, access_token, app_secret, waba_id)
        self.numbers[phone_number_id] = number
        self.configure(phone_number_id, **settings)
        return number

    def configure(self, phone_number_id: str, **settings: Any) -> Number:
        number = self.numbers[phone_number_id]
        allowed = {
            "verified_name",
            "quality_rating",
            "callback_url",
            "window_mode",
            "auto_status",
            "status_interval",
        }
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        if "window_mode" in settings and settings["window_mode"] not in WINDOW_MODES:
            raise ValueError(f"window_mode must be one of {', '.join(WINDOW_MODES)}")
        for key, value in settings.items():
            setattr(number, key, value)
        return number

    def set_window(self, phone_number_id: str, wa_id: str, last_inbound_at: float | None) -> None:
        """When the customer last wrote (None: never, so the window is closed)."""
        number = self.numbers[phone_number_id]
        if last_inbound_at is None:
            number.last_inbound.pop(digits(wa_id), None)
        else:
            number.last_inbound[digits(wa_id)] = last_inbound_at

    def add_fault(self, kind: str, **options: Any) -> Fault:
        fault = Fault(kind, **options)
        self.faults.append(fault)
        return fault

    def store_media(
        self, phone_number_id: str, content: bytes, mime_type: str, file_name: str | None = None
    ) -> StoredMedia:
        digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
        media = StoredMedia(payloads.new_numeric_id(), phone_number_id, content, mime_type, digest, file_name)
        self.media[media.id] = media
        return media

    async def emit_inbound(
        self, phone_number_id: str, spec: Mapping[str, Any], *, deliver: bool = True
    ) -> dict[str, Any]:
        """A customer writes: build the webhook, open their 24-hour window, POST it (signed).

        `spec`: `{"from", "name", "type", "text" | "media": {"content_base64", "mime_type",
        "filename", "caption", "voice", "animated"} | "location" | "contacts" | "reaction" |
        "reply" | "button", "context_id", "forwarded", "message_id", "timestamp"}`.
        """
        number = self.numbers[phone_number_id]
        wa_id = digits(str(spec.get("from") or ""))
        if not wa_id:
            raise ValueError("'from' (the customer's phone number) is required")
        name = str(spec.get("name") or number.names.get(wa_id) or f"Customer {wa_id[-4:]}")
        now = int(spec.get("timestamp") or self.clock())
        media_info: dict[str, Any] | None = None
        if spec.get("type") in payloads.MEDIA_TYPES:
            described = spec.get("media")
            if not isinstance(described, dict) or "content_base64" not in described:
                raise ValueError("a media message needs 'media' with content_base64 and mime_type")
            content = base64.b64decode(str(described["content_base64"]), validate=True)
            stored = self.store_media(
                phone_number_id,
                content,
                str(described.get("mime_type") or "application/octet-stream"),
                described.get("filename"),
            )
            media_info = {"id": stored.id, "mime_type": stored.mime_type, "sha256": stored.sha256}
        message_id = str(spec.get("message_id") or payloads.new_wamid())
        message = payloads.inbound_message(
            spec,
            wa_id=wa_id,
            message_id=message_id,
            timestamp=now,
            business_number=number.display_phone_number,
            media=media_info,
        )
        number.names[wa_id] = name
        number.last_inbound[wa_id] = float(now)
        payload = payloads.envelope(
            waba_id=number.waba_id,
            phone_number_id=number.phone_number_id,
            display_phone_number=number.display_phone_number,
            contacts=[payloads.contact(wa_id, name)],
            items=("messages", [message]),
        )
        result: dict[str, Any] = {"message_id": message_id, "payload": payload}
        if media_info is not None:
            result["media_id"] = media_info["id"]
        if deliver:
            result["delivery"] = asdict(await self.deliver(number, payload))
        return result

    async def emit_statuses(
        self,
        phone_number_id: str,
        message_id: str,
        statuses: Iterable[str],
        *,
        recipient: str | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> list[Delivery]:
        """One status webhook per status, in order (as Meta sends them)."""
        number = self.numbers[phone_number_id]
        sent = next((m for m in self.messages if m.id == message_id), None)
        wa_id = digits(recipient or (sent.wa_id if sent else ""))
        if not wa_id:
            raise ValueError("the message is unknown: give 'recipient'")
        conversation = hashlib.sha256(f"{phone_number_id}:{wa_id}".encode()).hexdigest()[:30]
        deliveries = []
        for status in statuses:
            if status not in ("sent", "delivered", "read", "failed"):
                raise ValueError("status must be sent, delivered, read or failed")
            item = payloads.status_item(
                message_id=message_id,
                status=status,
                recipient=wa_id,
                timestamp=int(self.clock()),
                conversation_id=conversation,
                error=error,
            )
            payload = payloads.envelope(
                waba_id=number.waba_id,
                phone_number_id=number.phone_number_id,
                display_phone_number=number.display_phone_number,
                contacts=[payloads.contact(wa_id, number.names.get(wa_id, wa_id))],
                items=("statuses", [item]),
            )
            deliveries.append(await self.deliver(number, payload))
        return deliveries

    async def deliver(self, number: Number, payload: Mapping[str, Any]) -> Delivery:
        """POST a webhook to the number's callback URL, signed with its app secret."""
        delivery = Delivery(number.callback_url or "", dict(payload))
        self.deliveries.append(delivery)
        if not number.callback_url:
            delivery.error = "no callback_url is configured for this number"
            return delivery
        body = payloads.serialise(payload)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.post(
                number.callback_url, data=body, headers=payloads.signature_headers(number.app_secret, body)
            ) as resp:
                await resp.read()
                delivery.status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        return delivery

    async def drain(self) -> None:
        """Wait for the status webhooks still being sent."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reset(self) -> None:
        self.numbers.clear()
        self.media.clear()
        self.messages.clear()
        self.calls.clear()
        self.deliveries.clear()
        self.faults.clear()

    # Routing

    def _routes(self) -> list[Route]:
        graph = self._graph
        return [
            Route("/sandbox/numbers", self._c_numbers, methods=["GET", "POST"]),
            Route("/sandbox/numbers/{pid}/settings", self._c_settings, methods=["POST"]),
            Route("/sandbox/numbers/{pid}/window", self._c_window, methods=["POST"]),
            Route("/sandbox/numbers/{pid}/inbound", self._c_inbound, methods=["POST"]),
            Route("/sandbox/numbers/{pid}/statuses", self._c_statuses, methods=["POST"]),
            Route("/sandbox/faults", self._c_faults, methods=["GET", "POST", "DELETE"]),
            Route("/sandbox/calls", self._c_calls, methods=["GET", "DELETE"]),
            Route("/sandbox/messages", self._c_messages, methods=["GET"]),
            Route("/sandbox/deliveries", self._c_deliveries, methods=["GET"]),
            Route("/sandbox/reset", self._c_reset, methods=["POST"]),
            Route(MEDIA_PATH, graph(self._download), methods=["GET"]),
            Route("/{version}/{object_id}/messages", graph(self._send), methods=["POST"]),
            Route("/{version}/{object_id}/media", graph(self._upload), methods=["POST"]),
            Route("/{version}/{object_id}", graph(self._get_object), methods=["GET"]),
            Route("/{rest:path}", graph(self._unknown), methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
        ]

    def _graph(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Record the call, apply a matching fault, turn `_Refused` into Graph's error body."""

        async def endpoint(request: Request) -> Response:
            object_id = request.path_params.get("object_id")
            call = Call(
                request.method,
                request.url.path,
                dict(request.query_params),
                object_id,
                at=self.clock(),
            )
            self.calls.append(call)
            fault = self._take_fault(request.method, request.url.path, object_id)
            response: Response
            if fault is not None:
                call.fault = fault.kind
                if fault.delay:
                    await asyncio.sleep(fault.delay)
            answer = fault.answer() if fault is not None else None
            if answer is not None:
                status, body, headers = answer
                response = JSONResponse(body, status_code=status, headers=headers)
            else:
                try:
                    _check_version(request)
                    response = await handler(request, call)
                except _Refused as refused:
                    response = JSONResponse(refused.body, status_code=refused.status)
            call.status = response.status_code
            return response

        return endpoint

    def _take_fault(self, method: str, path: str, object_id: str | None) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path, object_id):
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    # Graph endpoints

    def _token(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip() or None
        return request.query_params.get("access_token") or None

    def _authorize(self, request: Request, call: Call, owner: Number | None, object_id: str) -> Number:
        """The number the token belongs to, which must own `object_id` (`owner`)."""
        token = self._token(request)
        if token is None:
            call.authorized = False
            raise _Refused(401, graph_error(104, "An access token is required to request this resource."))
        holder = next((n for n in self.numbers.values() if hmac.compare_digest(n.access_token, token)), None)
        if holder is None:
            call.authorized = False
            raise _Refused(401, graph_error(190, "Invalid OAuth access token - Cannot parse access token"))
        call.authorized = True
        if owner is None or owner.access_token != holder.access_token:
            raise _no_object(object_id, request.method)
        return owner

    async def _get_object(self, request: Request, call: Call) -> Response:
        object_id = request.path_params["object_id"]
        if object_id in self.media:
            media = self.media[object_id]
            self._authorize(request, call, self.numbers.get(media.phone_number_id), object_id)
            wanted = request.query_params.get("phone_number_id")
            if wanted and wanted != media.phone_number_id:
                raise _no_object(object_id, "get")
            token = hmac.new(media.sha256.encode(), media.id.encode(), hashlib.sha256).hexdigest()[:16]
            url = f"{str(request.base_url).rstrip('/')}{MEDIA_PATH}?mid={media.id}&ext={int(self.clock())}&hash={token}"
            return JSONResponse(
                {
                    "url": url,
                    "mime_type": media.mime_type,
                    "sha256": media.sha256,
                    "file_size": str(len(media.content)),
                    "id": media.id,
                    "messaging_product": "whatsapp",
                }
            )
        number = self._authorize(request, call, self.numbers.get(object_id), object_id)
        requested = [f for f in (request.query_params.get("fields") or "").split(",") if f]
        available = {
            "id": number.phone_number_id,
            "display_phone_number": number.display_phone_number,
            "verified_name": number.verified_name,
            "quality_rating": number.quality_rating,
            "name_status": "APPROVED",
            "code_verification_status": "VERIFIED",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
        }
        for name in requested:
            if name not in available:
                raise _Refused(
                    400,
                    graph_error(
                        100,
                        f"(#100) Tried accessing nonexisting field ({name}) on node type (WhatsAppBusinessPhoneNumber)",
                    ),
                )
        fields = requested or list(DEFAULT_FIELDS)
        return JSONResponse({**{f: available[f] for f in fields}, "id": number.phone_number_id})

    async def _send(self, request: Request, call: Call) -> Response:
        object_id = request.path_params["object_id"]
        number = self._authorize(request, call, self.numbers.get(object_id), object_id)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise _invalid("the request body is not valid JSON") from None
        call.json = body
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            raise _invalid(
                "messaging_product must be 'whatsapp'", "(#100) The parameter messaging_product is required."
            )
        problems = send_message_problems(body)
        if problems:
            raise _invalid("; ".join(problems[:5]))
        if "status" in body and "type" not in body:
            return JSONResponse({"success": True})
        kind = str(body["type"])
        media = body.get(kind) if kind in payloads.MEDIA_TYPES else None
        if isinstance(media, dict) and media.get("id"):
            stored = self.media.get(str(media["id"]))
            if stored is None or stored.phone_number_id != number.phone_number_id:
                raise _invalid(f"media id {media['id']} was not uploaded to this phone number")
        wa_id = digits(str(body["to"]))
        if not wa_id:
            raise _invalid("'to' must be a phone number")
        window_open = self.clock() - number.last_inbound.get(wa_id, float("-inf")) <= WINDOW_SECONDS
        outside = kind not in FREE_FORM_EXEMPT and not window_open and number.window_mode != "off"
        if outside and number.window_mode == "reject":
            preset = "Message failed to send because more than 24 hours have passed since the customer last replied to this number."
            raise _Refused(400, graph_error(131047, "(#131047) Re-engagement message", details=preset))
        message = SentMessage(
            payloads.new_wamid(), number.phone_number_id, str(body["to"]), wa_id, kind, body, self.clock()
        )
        self.messages.append(message)
        if number.callback_url and number.auto_status:
            self._spawn(self._status_sequence(number, message, failed=outside))
        answer: dict[str, Any] = {"id": message.id}
        if kind == "template":
            answer["message_status"] = "accepted"
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": str(body["to"]), "wa_id": wa_id}],
                "messages": [answer],
            }
        )

    async def _upload(self, request: Request, call: Call) -> Response:
        object_id = request.path_params["object_id"]
        number = self._authorize(request, call, self.numbers.get(object_id), object_id)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise _invalid("uploads are multipart/form-data with 'file' and messaging_product=whatsapp")
        async with request.form(max_files=1) as form:
            upload = form.get("file")
            fields = {key: value for key, value in form.items() if isinstance(value, str)}
            call.form = dict(fields)
            if fields.get("messaging_product") != "whatsapp":
                raise _invalid(
                    "messaging_product must be 'whatsapp'",
                    "(#100) The parameter messaging_product is required.",
                )
            if not isinstance(upload, UploadFile):
                raise _invalid("the 'file' part is required", "(#100) The parameter file is required.")
            content = await upload.read(MAX_UPLOAD + 1)
            if len(content) > MAX_UPLOAD:
                raise _invalid(f"files are at most {MAX_UPLOAD} bytes")
            mime = fields.get("type") or upload.content_type or "application/octet-stream"
            call.form["file"] = {
                "file_name": upload.filename,
                "size": len(content),
                "content_type": upload.content_type,
            }
            stored = self.store_media(number.phone_number_id, content, mime, upload.filename)
        return JSONResponse({"id": stored.id})

    async def _download(self, request: Request, call: Call) -> Response:
        media_id = request.query_params.get("mid", "")
        media = self.media.get(media_id)
        token = self._token(request)
        owner = self.numbers.get(media.phone_number_id) if media else None
        call.authorized = bool(token and owner and hmac.compare_digest(owner.access_token, token))
        if not call.authorized:
            raise _Refused(401, graph_error(190, "Invalid OAuth access token - Cannot parse access token"))
        assert media is not None
        return Response(media.content, media_type=media.mime_type)

    async def _unknown(self, request: Request, call: Call) -> Response:
        raise _Refused(400, graph_error(2500, f"Unknown path components: {request.url.path}"))

    # Status webhooks

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        async def run() -> None:
            await coroutine

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _status_sequence(self, number: Number, message: SentMessage, *, failed: bool) -> None:
        if failed:
            error = {
                "code": 131047,
                "title": "Re-engagement message",
                "details": "Message failed to send because more than 24 hours have passed since the customer last "
                "replied to this number.",
            }
            await asyncio.sleep(number.status_interval)
            await self.emit_statuses(number.phone_number_id, message.id, ["failed"], error=error)
            return
        for status in ("sent", "delivered", "read"):
            await asyncio.sleep(number.status_interval)
            await self.emit_statuses(number.phone_number_id, message.id, [status])

    # Control endpoints

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _number_or_404(self, request: Request) -> Number | None:
        return self.numbers.get(request.path_params["pid"])

    async def _c_numbers(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([n.public() for n in self.numbers.values()])
        data = await self._json(request)
        required = ("phone_number_id", "display_phone_number", "access_token", "app_secret", "waba_id")
        missing = [key for key in required if not isinstance(data.get(key), str) or not data[key]]
        if missing:
            return _control_error(400, f"missing: {', '.join(missing)}")
        base = {key: data.pop(key) for key in required}
        try:
            number = self.add_number(
                base["phone_number_id"],
                display_phone_number=base["display_phone_number"],
                access_token=base["access_token"],
                app_secret=base["app_secret"],
                waba_id=base["waba_id"],
                **data,
            )
        except (ValueError, TypeError) as exc:
            self.numbers.pop(base["phone_number_id"], None)
            return _control_error(400, str(exc))
        return JSONResponse(number.public(), status_code=201)

    async def _c_settings(self, request: Request) -> Response:
        number = self._number_or_404(request)
        if number is None:
            return _control_error(404, "no such phone number")
        try:
            self.configure(number.phone_number_id, **await self._json(request))
        except (ValueError, TypeError) as exc:
            return _control_error(400, str(exc))
        return JSONResponse(number.public())

    async def _c_window(self, request: Request) -> Response:
        number = self._number_or_404(request)
        if number is None:
            return _control_error(404, "no such phone number")
        data = await self._json(request)
        if not data.get("wa_id"):
            return _control_error(400, "wa_id is required")
        at = data.get("last_inbound_at", self.clock() if data.get("open", True) else None)
        self.set_window(number.phone_number_id, str(data["wa_id"]), None if at is None else float(at))
        return JSONResponse(number.public())

    async def _c_inbound(self, request: Request) -> Response:
        number = self._number_or_404(request)
        if number is None:
            return _control_error(404, "no such phone number")
        data = await self._json(request)
        try:
            result = await self.emit_inbound(
                number.phone_number_id, data, deliver=bool(data.get("deliver", True))
            )
        except (ValueError, TypeError) as exc:
            return _control_error(400, str(exc))
        return JSONResponse(result)

    async def _c_statuses(self, request: Request) -> Response:
        number = self._number_or_404(request)
        if number is None:
            return _control_error(404, "no such phone number")
        data = await self._json(request)
        statuses = data.get("statuses") or (
            [data["status"]] if data.get("status") else ["sent", "delivered", "read"]
        )
        try:
            deliveries = await self.emit_statuses(
                number.phone_number_id,
                str(data.get("message_id") or ""),
                [str(s) for s in statuses],
                recipient=data.get("recipient"),
                error=data.get("error"),
            )
        except (ValueError, TypeError) as exc:
            return _control_error(400, str(exc))
        return JSONResponse([asdict(d) for d in deliveries])

    async def _c_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.clear()
            return Response(status_code=204)
        if request.method == "GET":
            return JSONResponse([f.public() for f in self.faults])
        data = await self._json(request)
        try:
            fault = self.add_fault(str(data.pop("kind", "")), **data)
        except (ValueError, TypeError) as exc:
            return _control_error(400, str(exc))
        return JSONResponse(fault.public(), status_code=201)

    async def _c_calls(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.calls.clear()
            return Response(status_code=204)
        return JSONResponse([asdict(c) for c in self.calls])

    async def _c_messages(self, request: Request) -> Response:
        return JSONResponse([asdict(m) for m in self.messages])

    async def _c_deliveries(self, request: Request) -> Response:
        return JSONResponse([asdict(d) for d in self.deliveries])

    async def _c_reset(self, request: Request) -> Response:
        self.reset()
        return Response(status_code=204)
