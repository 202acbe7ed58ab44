"""Prefixed, time-sortable identifiers (`int_01j…`): readable in logs, ordered for cursors."""

from __future__ import annotations

import secrets

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{str(ULID()).lower()}"


def new_public_id() -> str:
    """An unguessable id for URLs we hand to providers (`/in/{kind}/{public_id}`)."""
    return secrets.token_urlsafe(18)
