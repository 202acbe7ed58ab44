"""When to try a failed webhook delivery again."""

from __future__ import annotations

import random

# Immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (as Svix and Standard Webhooks do).
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_RETRY_AFTER = 6 * 3600.0


def next_delay(schedule: tuple[float, ...], attempts: int, retry_after: float | None) -> float | None:
    """Seconds until attempt number `attempts + 1`, or None when the schedule is exhausted.

    `attempts` counts attempts made so far. Up to 20 % jitter spreads retries of many
    deliveries; a receiver's Retry-After is honoured when longer, up to 6 hours.
    """
    if attempts >= len(schedule):
        return None
    delay = schedule[attempts] * (1 + random.random() * 0.2)  # noqa: S311 - jitter, not security
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay
