"""A circuit breaker per integration: stop hammering a provider that is down, probe it back.

closed → (N consecutive transient failures) → open for `cooldown` → half-open: one probe;
success closes it, failure opens it again. Per process: each worker learns on its own,
which costs at most N failed sends per process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False


class CircuitBreakers:
    def __init__(
        self, *, threshold: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self._states: dict[str, _State] = {}

    def wait_time(self, key: str) -> float:
        """0 when a send may go ahead (closed, or this is the half-open probe)."""
        state = self._states.get(key)
        if state is None or state.failures < self.threshold:
            return 0.0
        now = self.clock()
        if now < state.open_until:
            return state.open_until - now
        if state.probing:
            return 1.0  # a probe is in flight; check again shortly
        state.probing = True
        return 0.0

    def success(self, key: str) -> None:
        self._states.pop(key, None)

    def failure(self, key: str) -> None:
        state = self._states.setdefault(key, _State())
        state.failures += 1
        state.probing = False
        if state.failures >= self.threshold:
            state.open_until = self.clock() + self.cooldown

    def is_open(self, key: str) -> bool:
        state = self._states.get(key)
        return state is not None and state.failures >= self.threshold and self.clock() < state.open_until
