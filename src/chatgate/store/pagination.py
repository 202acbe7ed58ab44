"""Opaque cursors for keyset pagination over time-sortable ids (newest first)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Generic, TypeVar

from chatgate.domain.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(last_key: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": last_key}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | int | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded))["k"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput("the cursor is not one this API returned") from exc
    if not isinstance(value, str | int):
        raise InvalidInput("the cursor is not one this API returned")
    return value


def page_of(rows: list[T], limit: int, key_of: KeyOf[T]) -> Page[T]:
    """`rows` was fetched with limit+1; the extra row only tells that another page exists."""
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, encode_cursor(key_of(rows[-1])))
    return Page(rows, None)


class KeyOf(Generic[T]):
    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __call__(self, row: T) -> str | int:
        value = getattr(row, self.attribute)
        assert isinstance(value, str | int)
        return value
