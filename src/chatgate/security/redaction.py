"""Keep secrets out of logs: known secret values plus the shapes of tokens we handle.

Every secret chatgate decrypts or receives is registered here; the logging filter replaces
any registered value, and anything shaped like a bot token, API key, bearer token or signing
secret, before a record is written.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import OrderedDict

MASK = "[REDACTED]"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d{6,12}:[A-Za-z0-9_-]{30,}"), MASK),  # Telegram bot token, also inside /bot<token>/ URLs
    (re.compile(r"cgk_[a-z0-9]{12}_[A-Za-z0-9_-]{32}"), MASK),  # our API keys
    (re.compile(r"whsec_[A-Za-z0-9+/=]{16,}"), MASK),  # webhook signing secrets
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{16,}"), r"\1" + MASK),
    (re.compile(r"\bEAA[A-Za-z0-9]{20,}"), MASK),  # Meta access tokens
]


class Redactor:
    """Known secrets are found by a 6-character prefix index, not one big alternation: with
    thousands of integrations (a token and a webhook secret each) a regex alternation is
    scanned branch by branch for every log line, and rebuilt whenever a secret is added."""

    _PREFIX = 6

    def __init__(self, max_secrets: int = 50_000) -> None:
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._max = max_secrets
        self._lock = threading.Lock()
        self._by_prefix: dict[str, list[str]] = {}

    def register(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if not value or len(value) < self._PREFIX:
                    continue
                if value in self._secrets:
                    self._secrets.move_to_end(value)
                    continue
                self._secrets[value] = None
                candidates = self._by_prefix.setdefault(value[: self._PREFIX], [])
                candidates.append(value)
                candidates.sort(key=len, reverse=True)  # the longest match wins
            while len(self._secrets) > self._max:
                evicted, _ = self._secrets.popitem(last=False)
                candidates = self._by_prefix.get(evicted[: self._PREFIX], [])
                if evicted in candidates:
                    candidates.remove(evicted)
                if not candidates:
                    self._by_prefix.pop(evicted[: self._PREFIX], None)

    def _redact_known(self, text: str) -> str:
        index = self._by_prefix  # lists are only appended to or trimmed under the lock
        if not index:
            return text
        parts: list[str] = []
        start = position = 0
        last = len(text) - self._PREFIX
        while position <= last:
            candidates = index.get(text[position : position + self._PREFIX])
            if candidates:
                match = next((c for c in candidates if text.startswith(c, position)), None)
                if match is not None:
                    parts += [text[start:position], MASK]
                    position += len(match)
                    start = position
                    continue
            position += 1
        if not parts:
            return text
        parts.append(text[start:])
        return "".join(parts)

    def redact(self, text: str) -> str:
        text = self._redact_known(text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """Render the message, scrub it, and freeze it, so no formatter sees the raw secret."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = self._redactor.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._redactor.redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, self._redactor.redact(value))
        return True


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
