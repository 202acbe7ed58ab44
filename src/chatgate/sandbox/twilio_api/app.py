"""The sandbox's ASGI app: Twilio's API routes, the control API, and the webhooks it sends."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chatgate.sandbox.twilio_api.model import (
    API_VERSION,
    DEFAULT_PROGRESSION,
    ERROR_MESSAGES,
    FAULT_KINDS,
    WHATSAPP,
    WINDOW_MODES,
    WINDOW_SECONDS,
    Account,
    CallbackRecord,
    Fault,
    MediaFile,
    RecordedCall,
    SandboxControlError,
    SandboxMessage,
    Settings,
    TwilioApiError,
    new_sid,
    rfc2822,
    twilio_signature,
)
from chatgate.sandbox.twilio_api.rules import CreateMessageRules


class SandboxTwilioApi:
    """In-memory Twilio state plus the Starlette app (`.app`) that serves it."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        settings: Settings | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.clock = clock
        self.settings = settings or Settings()
        self.accounts: dict[str, Account] = {}
        self.messages: dict[str, SandboxMessage] = {}
        self.requests: list[RecordedCall] = []
        self.callbacks: list[CallbackRecord] = []
        self.webhooks: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.last_inbound: dict[tuple[str, str], float] = {}
        self._media: dict[str, MediaFile] = {}
        self._cdn: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._rules = CreateMessageRules()
        api = "/2010-04-01/Accounts/{account_sid}"
        self.app = Starlette(
            routes=[
                Route(f"{api}.json", self._api(self._get_account), methods=["GET"]),
                Route(f"{api}/Messages.json", self._api(self._create_message), methods=["POST"]),
                Route(f"{api}/Messages.json", self._api(self._list_messages), methods=["GET"]),
                Route(f"{api}/Messages/{{sid}}.json", self._api(self._get_message), methods=["GET"]),
                Route(
                    f"{api}/Messages/{{sid}}/Media/{{media_sid}}", self._api(self._get_media), methods=["GET"]
                ),
                Route("/cdn/{token}", self._api(self._cdn_media, authenticated=False), methods=["GET"]),
                Route("/sandbox/accounts", self._control(self._add_account_route), methods=["POST"]),
                Route(
                    "/sandbox/accounts/{account_sid}/keys",
                    self._control(self._add_key_route),
                    methods=["POST"],
                ),
                Route(
                    "/sandbox/accounts/{account_sid}/opt_outs",
                    self._control(self._opt_out_route),
                    methods=["POST"],
                ),
                Route("/sandbox/window", self._control(self._window_route), methods=["POST"]),
                Route("/sandbox/settings", self._control(self._settings_route), methods=["POST", "GET"]),
                Route(
                    "/sandbox/faults", self._control(self._faults_route), methods=["POST", "DELETE", "GET"]
                ),
                Route("/sandbox/inbound", self._control(self._inbound_route), methods=["POST"]),
                Route("/sandbox/messages/{sid}/status", self._control(self._status_route), methods=["POST"]),
                Route("/sandbox/messages", self._control(self._messages_route), methods=["GET"]),
                Route("/sandbox/requests", self._control(self._requests_route), methods=["GET", "DELETE"]),
                Route("/sandbox/callbacks", self._control(self._callbacks_route), methods=["GET"]),
                Route("/sandbox/webhooks", self._control(self._webhooks_route), methods=["GET"]),
                Route("/sandbox/reset", self._control(self._reset_route), methods=["POST"]),
            ]
        )

    # --- Python-side control (the HTTP control API calls these) ------------------------------

    def add_account(
        self,
        account_sid: str | None = None,
        auth_token: str | None = None,
        *,
        friendly_name: str = "Sandbox account",
        status: str = "active",
        senders: list[str] | None = None,
    ) -> Account:
        sid = account_sid or new_sid("AC")
        if not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
            raise ValueError("account_sid must be AC followed by 32 hex digits")
        account = Account(
            sid,
            auth_token or secrets.token_hex(16),
            friendly_name,
            status,
            senders=set(senders or []),
            created=self.clock(),
        )
        self.accounts[sid] = account
        return account

    def add_api_key(
        self, account_sid: str, sid: str | None = None, secret: str | None = None
    ) -> tuple[str, str]:
        account = self._account(account_sid)
        key_sid = sid or new_sid("SK")
        if not re.fullmatch(r"SK[0-9a-fA-F]{32}", key_sid):
            raise ValueError("an API key sid is SK followed by 32 hex digits")
        key_secret = secret or secrets.token_urlsafe(24)
        account.api_keys[key_sid] = key_secret
        return key_sid, key_secret

    def inject_fault(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        self.faults.append(fault)

    def open_window(self, account_sid: str, address: str, at: float | None = None) -> None:
        self.last_inbound[(account_sid, address)] = self.clock() if at is None else at

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every pending status callback has been delivered."""
        deadline = time.monotonic() + within
        while self._tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("status callbacks still pending")
            await asyncio.wait(set(self._tasks), timeout=remaining)

    def reset(self) -> None:
        self.messages.clear()
        self.requests.clear()
        self.callbacks.clear()
        self.webhooks.clear()
        self.faults.clear()
        self.last_inbound.clear()
        self._media.clear()
        self._cdn.clear()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _account(self, sid: str) -> Account:
        account = self.accounts.get(sid)
        if account is None:
            raise SandboxControlError(404, f"no sandbox account {sid}")
        return account

    # --- plumbing ------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        return self._session

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.count > 0 and fault.matches(method, path):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_error(fault: Fault) -> TwilioApiError:
        if fault.kind == "rate_limit":
            retry = fault.retry_after if fault.retry_after is not None else 1
            return TwilioApiError(
                fault.status or 429,
                fault.code or 20429,
                fault.message or "Too Many Requests",
                headers={"Retry-After": f"{retry:g}"},
            )
        if fault.kind == "unauthorized":
            return TwilioApiError(
                401, 20003, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        if fault.kind == "server_error":
            status = fault.status or 500
            return TwilioApiError(
                status,
                fault.code or (20503 if status == 503 else 20500),
                fault.message or ("Service Unavailable" if status == 503 else "Internal Server Error"),
            )
        return TwilioApiError(fault.status or 400, fault.code or 20001, fault.message or "Simulated error")

    @staticmethod
    def _basic_auth(request: Request) -> tuple[str, str] | None:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    def _authenticate(self, request: Request, account_sid: str) -> None:
        credentials = self._basic_auth(request)
        unauthorized = TwilioApiError(
            401, 20003, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
        )
        if credentials is None:
            raise unauthorized
        user, password = credentials
        owner: Account | None = None
        for account in self.accounts.values():
            secret = account.auth_token if user == account.sid else account.api_keys.get(user)
            if secret is not None and hmac.compare_digest(password.encode(), secret.encode()):
                owner = account
        if owner is None:
            raise unauthorized
        if owner.sid != account_sid:
            raise TwilioApiError(404, 20404, f"The requested resource {request.url.path} was not found")

    def _api(
        self,
        handler: Callable[[Request, list[tuple[str, str]]], Awaitable[Response]],
        *,
        authenticated: bool = True,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                form = parse_qsl(raw.decode("utf-8"), keep_blank_values=True) if raw else []
            except UnicodeDecodeError:
                form = []
            credentials = self._basic_auth(request)
            record = RecordedCall(
                request.method,
                request.url.path,
                request.url.query,
                form,
                credentials[0] if credentials else None,
                at=self.clock(),
            )
            self.requests.append(record)
            try:
                fault = self._take_fault(request.method, request.url.path) if authenticated else None
                if fault is not None:
                    record.fault = fault.kind
                    if fault.kind == "slow":
                        await asyncio.sleep(fault.delay)
                    else:
                        raise self._fault_error(fault)
                if authenticated:
                    self._authenticate(request, request.path_params["account_sid"])
                response = await handler(request, form)
            except TwilioApiError as exc:
                response = exc.response()
            record.status = response.status_code
            return response

        return endpoint

    def _control(
        self, handler: Callable[[Request, dict[str, Any]], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            payload: dict[str, Any] = {}
            raw = await request.body()
            if raw:
                try:
                    loaded = json.loads(raw)
                except ValueError:
                    return JSONResponse({"error": "the body must be JSON"}, status_code=400)
                if not isinstance(loaded, dict):
                    return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
                payload = loaded
            try:
                result = await handler(request, payload)
            except SandboxControlError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except (ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": f"bad control request: {exc}"}, status_code=400)
            status = (
                201 if request.method == "POST" and request.url.path.endswith(("/accounts", "/keys")) else 200
            )
            return JSONResponse(result, status_code=status)

        return endpoint

    # --- Twilio API ----------------------------------------------------------------------

    async def _get_account(self, request: Request, form: list[tuple[str, str]]) -> Response:
        account = self.accounts[request.path_params["account_sid"]]
        uri = f"/{API_VERSION}/Accounts/{account.sid}"
        return JSONResponse(
            {
                "auth_token": account.auth_token,
                "date_created": rfc2822(account.created),
                "date_updated": rfc2822(account.created),
                "friendly_name": account.friendly_name,
                "owner_account_sid": account.sid,
                "sid": account.sid,
                "status": account.status,
                "subresource_uris": {"messages": f"{uri}/Messages.json"},
                "type": "Full",
                "uri": f"{uri}.json",
            }
        )

    def _window_open(self, account_sid: str, address: str) -> bool:
        opened = self.last_inbound.get((account_sid, address))
        return opened is not None and self.clock() - opened < WINDOW_SECONDS

    async def _create_message(self, request: Request, form: list[tuple[str, str]]) -> Response:
        account = self.accounts[request.path_params["account_sid"]]
        values = self._rules.typed_form(form)
        self._rules.check_values(values)
        to = str(values.get("To", "")).strip()
        fails_window = self._rules.check_rules(
            account,
            values,
            window_mode=self.settings.whatsapp_window,
            window_open=self._window_open(account.sid, to),
        )
        media = list(values.get("MediaUrl", []))
        now = self.clock()
        via_service = bool(values.get("MessagingServiceSid")) and not values.get("From")
        message = SandboxMessage(
            sid=new_sid("MM" if media else "SM"),
            account_sid=account.sid,
            to=values["To"].strip(),
            from_=values.get("From") or None,
            messaging_service_sid=values.get("MessagingServiceSid"),
            body=values.get("Body", ""),
            media_urls=media,
            content_sid=values.get("ContentSid"),
            content_variables=values.get("ContentVariables"),
            status_callback=values.get("StatusCallback"),
            status="accepted" if via_service else "queued",
            created=now,
            updated=now,
            form=list(form),
        )
        self.messages[message.sid] = message
        if message.status_callback and self.settings.auto_status:
            if fails_window:
                steps: list[tuple[str, int | None]] = [("queued", None), ("failed", 63016)]
            else:
                progression = self.settings.progression.get(
                    message.channel, DEFAULT_PROGRESSION[message.channel]
                )
                steps = [(status, None) for status in progression]
            self._spawn(self._progress(message, steps))
        elif fails_window:
            self._set_status(message, "failed", 63016)
        return JSONResponse(message.resource(), status_code=201)

    async def _list_messages(self, request: Request, form: list[tuple[str, str]]) -> Response:
        sid = request.path_params["account_sid"]
        items = [m.resource() for m in self.messages.values() if m.account_sid == sid]
        uri = f"/{API_VERSION}/Accounts/{sid}/Messages.json"
        return JSONResponse(
            {
                "messages": items,
                "end": max(0, len(items) - 1),
                "first_page_uri": f"{uri}?PageSize=50&Page=0",
                "next_page_uri": None,
                "page": 0,
                "page_size": 50,
                "previous_page_uri": None,
                "start": 0,
                "uri": f"{uri}?PageSize=50&Page=0",
            }
        )

    async def _get_message(self, request: Request, form: list[tuple[str, str]]) -> Response:
        message = self.messages.get(request.path_params["sid"])
        if message is None or message.account_sid != request.path_params["account_sid"]:
            raise TwilioApiError(404, 20404, f"The requested resource {request.url.path} was not found")
        return JSONResponse(message.resource())

    async def _get_media(self, request: Request, form: list[tuple[str, str]]) -> Response:
        media = self._media.get(request.path_params["media_sid"])
        if (
            media is None
            or media.account_sid != request.path_params["account_sid"]
            or media.message_sid != request.path_params["sid"]
        ):
            raise TwilioApiError(404, 20404, f"The requested resource {request.url.path} was not found")
        token = secrets.token_urlsafe(24)
        self._cdn[token] = request.path_params["media_sid"]
        return RedirectResponse(f"/cdn/{token}", status_code=307)

    async def _cdn_media(self, request: Request, form: list[tuple[str, str]]) -> Response:
        media_sid = self._cdn.get(request.path_params["token"])
        media = self._media.get(media_sid or "")
        if media is None:
            return Response(
                "<Error><Code>AccessDenied</Code></Error>", status_code=403, media_type="application/xml"
            )
        return Response(media.content, media_type=media.content_type)

    # --- status callbacks ----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _set_status(self, message: SandboxMessage, status: str, error_code: int | None) -> None:
        message.status = status
        message.updated = self.clock()
        if status in ("sent", "delivered", "read") and message.sent is None:
            message.sent = message.updated
        if error_code is not None:
            message.error_code = error_code
            message.error_message = ERROR_MESSAGES.get(error_code, f"Error {error_code}")

    async def _progress(self, message: SandboxMessage, steps: list[tuple[str, int | None]]) -> None:
        for status, error_code in steps:
            await asyncio.sleep(self.settings.callback_delay)
            self._set_status(message, status, error_code)
            await self.send_status_callback(message, status, error_code)

    def _callback_params(
        self, message: SandboxMessage, status: str, error_code: int | None
    ) -> list[tuple[str, str]]:
        params = [
            ("SmsSid", message.sid),
            ("SmsStatus", status),
            ("MessageStatus", status),
            ("To", message.to),
            ("MessageSid", message.sid),
            ("AccountSid", message.account_sid),
            ("From", message.from_ or ""),
            ("ApiVersion", API_VERSION),
        ]
        if message.messaging_service_sid:
            params.append(("MessagingServiceSid", message.messaging_service_sid))
        if message.channel == "whatsapp":
            params += [("ChannelPrefix", "whatsapp"), ("ChannelToAddress", message.to.removeprefix(WHATSAPP))]
        if error_code is not None:
            params.append(("ErrorCode", str(error_code)))
        return params

    async def send_status_callback(
        self, message: SandboxMessage, status: str, error_code: int | None = None
    ) -> CallbackRecord:
        """POST one signed status callback to the message's StatusCallback URL."""
        if not message.status_callback:
            raise SandboxControlError(409, f"message {message.sid} has no StatusCallback")
        account = self.accounts[message.account_sid]
        params = self._callback_params(message, status, error_code)
        record = CallbackRecord(
            message.sid,
            message.status_callback,
            status,
            params,
            twilio_signature(account.auth_token, message.status_callback, params),
        )
        self.callbacks.append(record)
        record.response_status, record.error = await self._post_signed(
            message.status_callback, params, record.signature
        )
        return record

    async def _post_signed(
        self,
        url: str,
        params: list[tuple[str, str]],
        signature: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[int | None, str | None]:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "User-Agent": "TwilioProxy/1.1",
            **(extra_headers or {}),
        }
        try:
            async with self._http().post(url, data=urlencode(params), headers=headers) as resp:
                await resp.read()
                return resp.status, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, type(exc).__name__

    # --- control routes ------------------------------------------------------------------

    async def _add_account_route(self, request: Request, payload: dict[str, Any]) -> Any:
        account = self.add_account(
            payload.get("account_sid"),
            payload.get("auth_token"),
            friendly_name=str(payload.get("friendly_name") or "Sandbox account"),
            status=str(payload.get("status") or "active"),
            senders=list(payload.get("senders") or []),
        )
        return {
            "account_sid": account.sid,
            "auth_token": account.auth_token,
            "friendly_name": account.friendly_name,
            "status": account.status,
        }

    async def _add_key_route(self, request: Request, payload: dict[str, Any]) -> Any:
        sid, secret = self.add_api_key(
            request.path_params["account_sid"], payload.get("sid"), payload.get("secret")
        )
        return {"sid": sid, "secret": secret}

    async def _opt_out_route(self, request: Request, payload: dict[str, Any]) -> Any:
        self._account(request.path_params["account_sid"]).opt_outs.add(str(payload["address"]))
        return {"ok": True}

    async def _window_route(self, request: Request, payload: dict[str, Any]) -> Any:
        account = self._account(str(payload["account_sid"]))
        at = payload.get("at")
        self.open_window(account.sid, str(payload["address"]), float(at) if at is not None else None)
        return {"ok": True}

    async def _settings_route(self, request: Request, payload: dict[str, Any]) -> Any:
        if request.method == "POST":
            mode = payload.get("whatsapp_window", self.settings.whatsapp_window)
            if mode not in WINDOW_MODES:
                raise SandboxControlError(400, f"whatsapp_window must be one of {', '.join(WINDOW_MODES)}")
            self.settings.whatsapp_window = mode
            self.settings.auto_status = bool(payload.get("auto_status", self.settings.auto_status))
            self.settings.callback_delay = float(payload.get("callback_delay", self.settings.callback_delay))
            if isinstance(payload.get("progression"), dict):
                self.settings.progression.update({str(k): list(v) for k, v in payload["progression"].items()})
        return asdict(self.settings)

    async def _faults_route(self, request: Request, payload: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            self.faults.clear()
        elif request.method == "POST":
            known = set(Fault.__dataclass_fields__)
            unknown = set(payload) - known
            if unknown:
                raise SandboxControlError(400, f"unknown fault fields: {', '.join(sorted(unknown))}")
            try:
                self.inject_fault(Fault(**payload))
            except ValueError as exc:
                raise SandboxControlError(400, str(exc)) from exc
        return [asdict(f) for f in self.faults]

    async def _inbound_route(self, request: Request, payload: dict[str, Any]) -> Any:
        account = self._account(str(payload["account_sid"]))
        url, sender, to = str(payload["url"]), str(payload["from"]), str(payload["to"])
        media_items = payload.get("media") or []
        message_sid = new_sid("MM" if media_items else "SM")
        base = str(request.base_url).rstrip("/")
        body = str(payload.get("body") or "")
        params: list[tuple[str, str]] = []
        if sender.startswith(WHATSAPP):
            wa_id = payload.get("wa_id") or sender.removeprefix(WHATSAPP).lstrip("+")
            params += [("WaId", str(wa_id)), ("SmsMessageSid", message_sid)]
            if payload.get("profile_name"):
                params.append(("ProfileName", str(payload["profile_name"])))
            params.append(("MessageType", "image" if media_items else "text"))
        else:
            params.append(("SmsMessageSid", message_sid))
        params += [
            ("NumMedia", str(len(media_items))),
            ("SmsSid", message_sid),
            ("SmsStatus", "received"),
            ("Body", body),
            ("To", to),
            ("NumSegments", "1"),
            ("ReferralNumMedia", "0"),
            ("MessageSid", message_sid),
            ("AccountSid", account.sid),
            ("From", sender),
            ("ApiVersion", API_VERSION),
        ]
        if payload.get("messaging_service_sid"):
            params.append(("MessagingServiceSid", str(payload["messaging_service_sid"])))
        for index, item in enumerate(media_items):
            media_sid = new_sid("ME")
            content = base64.b64decode(str(item.get("content_base64") or ""))
            content_type = str(item.get("content_type") or "application/octet-stream")
            self._media[media_sid] = MediaFile(account.sid, message_sid, content, content_type)
            media_url = (
                f"{base}/{API_VERSION}/Accounts/{account.sid}/Messages/{message_sid}/Media/{media_sid}"
            )
            params += [(f"MediaContentType{index}", content_type), (f"MediaUrl{index}", media_url)]
        optional = {
            "latitude": "Latitude",
            "longitude": "Longitude",
            "address": "Address",
            "label": "Label",
            "button_payload": "ButtonPayload",
            "button_text": "ButtonText",
            "original_replied_message_sid": "OriginalRepliedMessageSid",
        }
        params += [
            (name, str(payload[key])) for key, name in optional.items() if payload.get(key) is not None
        ]
        params += [(str(k), str(v)) for k, v in (payload.get("extra") or {}).items()]
        signature = twilio_signature(account.auth_token, str(payload.get("signing_url") or url), params)
        self.open_window(account.sid, sender)
        status, error = await self._post_signed(url, params, signature, payload.get("headers"))
        record = {
            "message_sid": message_sid,
            "url": url,
            "params": params,
            "signature": signature,
            "response": {"status": status, "error": error},
        }
        self.webhooks.append(record)
        return record

    async def _status_route(self, request: Request, payload: dict[str, Any]) -> Any:
        message = self.messages.get(request.path_params["sid"])
        if message is None:
            raise SandboxControlError(404, f"no message {request.path_params['sid']}")
        status = str(payload["status"])
        code = payload.get("error_code")
        error_code = int(code) if code is not None else None
        self._set_status(message, status, error_code)
        record = await self.send_status_callback(message, status, error_code)
        return asdict(record)

    async def _messages_route(self, request: Request, payload: dict[str, Any]) -> Any:
        return [
            {**m.resource(), "form": m.form, "status_callback": m.status_callback}
            for m in self.messages.values()
        ]

    async def _requests_route(self, request: Request, payload: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            self.requests.clear()
        return [asdict(r) for r in self.requests]

    async def _callbacks_route(self, request: Request, payload: dict[str, Any]) -> Any:
        return [asdict(c) for c in self.callbacks]

    async def _webhooks_route(self, request: Request, payload: dict[str, Any]) -> Any:
        return self.webhooks

    async def _reset_route(self, request: Request, payload: dict[str, Any]) -> Any:
        self.reset()
        return {"ok": True}
