"""Injected faults: make matching Bot API calls fail (429, 5xx, 403, any error) or answer slowly."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatgate.sandbox.telegram_bot_api.errors import BotApiError, too_many_requests

FAULT_KINDS = frozenset({"429", "5xx", "403", "slow", "error"})
_SERVER_ERRORS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(slots=True)
class Fault:
    id: int
    kind: str
    bot_id: int | None = None
    method: str | None = None  # lower case; None matches every method
    chat_id: str | None = None  # compared as text; None matches every call
    remaining: int | None = 1  # None: until removed
    retry_after: int = 5
    status: int = 502
    description: str | None = None
    parameters: dict[str, Any] | None = None
    delay: float = 1.0
    hits: int = 0

    def matches(self, bot_id: int, method: str, params: Mapping[str, Any]) -> bool:
        if self.bot_id is not None and self.bot_id != bot_id:
            return False
        if self.method is not None and self.method != method.lower():
            return False
        return self.chat_id is None or str(params.get("chat_id")) == self.chat_id

    def error(self) -> BotApiError | None:
        if self.kind == "429":
            return too_many_requests(self.retry_after)
        if self.kind == "5xx":
            return BotApiError(
                self.status, self.description or _SERVER_ERRORS.get(self.status, "Bad Gateway")
            )
        if self.kind == "403":
            return BotApiError(403, self.description or "Forbidden: bot was blocked by the user")
        if self.kind == "error":
            return BotApiError(self.status, self.description or "Bad Request", self.parameters)
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "bot_id": self.bot_id,
            "method": self.method,
            "chat_id": self.chat_id,
            "remaining": self.remaining,
            "retry_after": self.retry_after,
            "status": self.status,
            "description": self.description,
            "parameters": self.parameters,
            "delay": self.delay,
            "hits": self.hits,
        }


def fault_from_json(fault_id: int, body: Mapping[str, Any]) -> Fault:
    """A fault from the control API's JSON; ValueError for anything malformed."""
    allowed = {
        "kind",
        "bot_id",
        "method",
        "chat_id",
        "times",
        "retry_after",
        "status",
        "description",
        "parameters",
        "delay",
    }
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    kind = str(body.get("kind", ""))
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(sorted(FAULT_KINDS))}")
    fault = Fault(fault_id, kind)
    if body.get("bot_id") is not None:
        fault.bot_id = _integer(body, "bot_id")
    if body.get("method") is not None:
        fault.method = str(body["method"]).lower()
    if body.get("chat_id") is not None:
        fault.chat_id = str(body["chat_id"])
    if "times" not in body:
        fault.remaining = 1
    elif body["times"] is None:
        fault.remaining = None
    else:
        fault.remaining = _integer(body, "times", minimum=1)
    if "retry_after" in body:
        fault.retry_after = _integer(body, "retry_after", minimum=1)
    if "status" in body:
        fault.status = _integer(body, "status", minimum=400)
    elif kind == "error":
        fault.status = 400
    if "delay" in body:
        delay = body["delay"]
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise TypeError("delay must be a non-negative number of seconds")
        fault.delay = float(delay)
    if body.get("description") is not None:
        fault.description = str(body["description"])
    if body.get("parameters") is not None:
        if not isinstance(body["parameters"], dict):
            raise TypeError("parameters must be an object")
        fault.parameters = dict(body["parameters"])
    if kind == "5xx" and not 500 <= fault.status <= 599:
        raise ValueError("a 5xx fault needs a status between 500 and 599")
    return fault


def _integer(body: Mapping[str, Any], key: str, minimum: int | None = None) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key} must be at least {minimum}")
    return value


class FaultSet:
    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, body: Mapping[str, Any]) -> Fault:
        fault = fault_from_json(next(self._ids), body)
        self.faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        before = len(self.faults)
        self.faults = [f for f in self.faults if f.id != fault_id]
        return len(self.faults) < before

    def clear(self) -> int:
        count = len(self.faults)
        self.faults.clear()
        return count

    def take(self, bot_id: int, method: str, params: Mapping[str, Any]) -> list[Fault]:
        """The faults this call meets: every matching `slow` one and the first matching error,
        each consuming one of its `times`."""
        hit: list[Fault] = []
        failing = False
        for fault in self.faults:
            if fault.matches(bot_id, method, params):
                if fault.kind != "slow":
                    if failing:
                        continue
                    failing = True
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                hit.append(fault)
        self.faults = [f for f in self.faults if f.remaining is None or f.remaining > 0]
        return hit
