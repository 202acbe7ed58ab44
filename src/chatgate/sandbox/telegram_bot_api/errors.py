"""Bot API errors: `{"ok": false, "error_code": N, "description": "...", "parameters": {...}}`."""

from __future__ import annotations

from typing import Any


class BotApiError(Exception):
    """An error answer; the HTTP status equals `error_code`, as with Telegram."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(message: str, parameters: dict[str, Any] | None = None) -> BotApiError:
    return BotApiError(400, f"Bad Request: {message}", parameters)


def forbidden(message: str) -> BotApiError:
    return BotApiError(403, f"Forbidden: {message}")


def unauthorized() -> BotApiError:
    return BotApiError(401, "Unauthorized")


def not_found() -> BotApiError:
    return BotApiError(404, "Not Found")


def conflict(message: str) -> BotApiError:
    return BotApiError(409, f"Conflict: {message}")


def too_many_requests(retry_after: int) -> BotApiError:
    return BotApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


CHAT_NOT_FOUND = "chat not found"
WRONG_FILE_ID = "wrong file_id or the file is temporarily unavailable"
WRONG_FILE_IDENTIFIER = "wrong file identifier/HTTP URL specified"
