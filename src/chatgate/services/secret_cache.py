"""Decrypted secrets kept for a short while, so a hot path does not unseal per request.

Keys include the sealed text, so a rotated secret is simply a new entry; entries expire after
`ttl` seconds and the cache never grows past `max_entries`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class SecretCache:
    def __init__(
        self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, str]] = OrderedDict()

    def get(self, key: Hashable) -> str | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= self.clock():
            del self._entries[key]
            return None
        return hit[1]

    def put(self, key: Hashable, value: str) -> None:
        self._entries[key] = (self.clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
