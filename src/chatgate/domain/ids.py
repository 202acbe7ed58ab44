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


# Crockford base32 (ULID's alphabet, lower case), two characters per 10 bits: ids are made on
# every inbound request, and a table lookup per pair is several times faster than the library.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_LOW_MASK = (1 << 20) - 1  # the bits of an id's last two pairs


def _next_value() -> int:
    """The next 128-bit ULID value: 48 bits of milliseconds, 80 bits random-then-incremented."""
    return _next_values(1)


def _next_values(count: int) -> int:
    """The first of `count` consecutive ULID values, reserved together."""
    global _last_ms, _last_random
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _last_random = now_ms, secrets.randbits(_RANDOM_BITS - 1)  # headroom to increment
        else:
            _last_random += 1
        first = _last_random
        _last_random += count - 1
        return (_last_ms << _RANDOM_BITS) | first


def _encode(value: int) -> str:
    """The 26-character ULID text of a 128-bit value (13 pairs cover 130 bits; the top 2 are 0)."""
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 0x3FF] for shift in range(120, -1, -10)])


def _next_ulid() -> ULID:
    return ULID.from_int(_next_value())


def new_id(prefix: str) -> str:
    return f"{prefix}_{_encode(_next_value())}"


def new_ids(prefix: str, count: int) -> list[str]:
    """`count` ids in order, as `new_id` would make them one after another (one lock and one
    clock read for a whole batch)."""
    if count <= 0:
        return []
    first = _next_values(count)
    low = first & _LOW_MASK
    if low + count - 1 > _LOW_MASK:  # the run carries into the higher bits: spell each in full
        return [f"{prefix}_{_encode(first + i)}" for i in range(count)]
    # Consecutive values differ only in their low 20 bits (the last two pairs): the rest is
    # spelled once for the whole run.
    head = f"{prefix}_{_encode(first)[:-4]}"
    pairs = _PAIRS
    return [head + pairs[value >> 10] + pairs[value & 0x3FF] for value in range(low, low + count)]


def new_public_id() -> str:
    """An unguessable id for URLs we hand to providers (`/in/{kind}/{public_id}`)."""
    return secrets.token_urlsafe(18)


RAW_PREFIX = "raw_"
JOB_PREFIX = "job_"


def inbound_job_id(raw_id: str) -> str:
    """The inbound job of a raw event shares its id's ULID (`raw_01…` → `job_01…`): unique and
    in arrival order like the event's, known without asking the database, and made only when
    a worker takes the event up (`JobStore.make_inbound_jobs`)."""
    return JOB_PREFIX + raw_id[len(RAW_PREFIX) :]


def inbound_raw_id(job_id: str) -> str:
    """The raw event an inbound job named after it (`inbound_job_id`) belongs to."""
    return RAW_PREFIX + job_id[len(JOB_PREFIX) :]
