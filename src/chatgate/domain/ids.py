"""Prefixed, time-sortable identifiers (`int_01j…`): readable in logs, ordered for cursors.

Ids are ULIDs made monotonic within this process: two ids made in the same millisecond still
sort in the order they were made, so "order by id" is arrival order (the inbound pipeline
processes a tenant's events in that order).
"""

from __future__ import annotations

import secrets
import threading
import time

from ulid import ULID

_lock = threading.Lock()
_last_ms = 0
_last_random = 0
_RANDOM_BITS = 80


def _next_ulid() -> ULID:
    global _last_ms, _last_random
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _last_random = now_ms, secrets.randbits(_RANDOM_BITS - 1)  # headroom to increment
        else:
            _last_random += 1
        return ULID.from_bytes(_last_ms.to_bytes(6, "big") + _last_random.to_bytes(10, "big"))


def new_id(prefix: str) -> str:
    return f"{prefix}_{str(_next_ulid()).lower()}"


def new_public_id() -> str:
    """An unguessable id for URLs we hand to providers (`/in/{kind}/{public_id}`)."""
    return secrets.token_urlsafe(18)
