"""Calling the Telegram Bot API: one function, Telegram's answers mapped to our typed errors.

The bot token is part of every Bot API URL (`/bot<token>/<method>`), so nothing here ever puts
a URL in an error: messages carry Telegram's own description, which never contains the token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from chatgate.domain.errors import (
    AuthRevoked,
    ContentRejected,
    PermanentProviderError,
    ProviderRateLimited,
    RecipientInvalid,
    TransientProviderError,
)
from chatgate.providers.http import FilePart, ProviderHttp

MAX_TEXT = 4096
MAX_CAPTION = 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile serves files up to 20 MB


class ChatMigrated(PermanentProviderError):
    """The group became a supergroup with a new id; resend there."""

    code = "chat_migrated"

    def __init__(self, message: str, *, new_chat_id: str) -> None:
        super().__init__(message, details={"migrate_to_chat_id": new_chat_id})
        self.new_chat_id = new_chat_id


class UpdatesConflict(TransientProviderError):
    """getUpdates refused: a webhook is set, or another poller is running for this bot."""

    code = "telegram_conflict"


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def raise_for_answer(status: int, answer: Mapping[str, Any], headers: Mapping[str, str]) -> None:
    """Turn Telegram's `{"ok": false, ...}` into the error type workers act on."""
    code = int(answer.get("error_code") or status)
    description = str(answer.get("description") or f"HTTP {status}")
    parameters = answer.get("parameters") or {}
    details = {"provider_code": str(code), "description": description}
    if parameters.get("migrate_to_chat_id") is not None:
        raise ChatMigrated(f"Telegram: {description}", new_chat_id=str(parameters["migrate_to_chat_id"]))
    if code == 429:
        retry_after = parameters.get("retry_after") or headers.get("retry-after") or 1
        raise ProviderRateLimited(f"Telegram: {description}", retry_after=float(retry_after))
    if code in (401, 404) and description.lower() in ("unauthorized", "not found"):
        raise AuthRevoked(f"Telegram refused the bot token ({code} {description})")
    if code == 403:
        raise RecipientInvalid(f"Telegram: {description}", details={**details, "unreachable": True})
    if code == 409:
        raise UpdatesConflict(f"Telegram: {description}")
    if code >= 500 or code in (408, 420):
        raise TransientProviderError(f"Telegram: {description}")
    if "chat not found" in description.lower() or "user not found" in description.lower():
        raise RecipientInvalid(f"Telegram: {description}", details=details)
    raise ContentRejected(f"Telegram: {description}", details=details)


class BotApi:
    """One bot's Bot API: `await api.call("sendMessage", chat_id=..., text=...)`."""

    def __init__(self, http: ProviderHttp, base_url: str, token: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = token

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        files: Sequence[FilePart] = (),
        time_limit: float | None = None,
    ) -> Any:
        values = {k: v for k, v in (params or {}).items() if v is not None}
        url = f"{self._base}/bot{self._token}/{method}"
        if files:
            result = await self._http.request(
                "POST",
                url,
                form={k: _form_value(v) for k, v in values.items()},
                files=files,
                time_limit=time_limit,
            )
        else:
            result = await self._http.request("POST", url, json=values, time_limit=time_limit)
        try:
            answer = json.loads(result.body)
        except ValueError:
            raise TransientProviderError(
                f"Telegram answered {result.status} with a body that is not JSON"
            ) from None
        if not isinstance(answer, dict):
            raise TransientProviderError(f"Telegram answered {result.status} with an unexpected body")
        if answer.get("ok") is True:
            return answer.get("result")
        raise_for_answer(result.status, answer, result.headers)
        raise AssertionError("unreachable")

    async def download(self, file_path: str, *, max_bytes: int) -> bytes:
        url = f"{self._base}/file/bot{self._token}/{file_path.lstrip('/')}"
        result = await self._http.request("GET", url, max_bytes=max_bytes)
        if result.status == 200:
            return result.body
        if result.status in (401, 404):
            raise PermanentProviderError(f"Telegram could not serve the file ({result.status})")
        raise TransientProviderError(f"Telegram answered {result.status} to a file download")
