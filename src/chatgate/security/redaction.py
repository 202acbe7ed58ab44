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
    def __init__(self, max_secrets: int = 50_000) -> None:
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._max = max_secrets
        self._lock = threading.Lock()
        self._compiled: re.Pattern[str] | None = None

    def register(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if value and len(value) >= 6:
                    self._secrets[value] = None
                    self._secrets.move_to_end(value)
            while len(self._secrets) > self._max:
                self._secrets.popitem(last=False)
            self._compiled = None

    def _known_pattern(self) -> re.Pattern[str] | None:
        # One alternation, longest first, rebuilt only after a new secret is registered.
        with self._lock:
            if self._compiled is None and self._secrets:
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._compiled = re.compile("|".join(re.escape(s) for s in ordered))
            return self._compiled

    def redact(self, text: str) -> str:
        known = self._known_pattern()
        if known is not None:
            text = known.sub(MASK, text)
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
