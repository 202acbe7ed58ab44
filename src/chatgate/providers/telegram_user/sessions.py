"""Telegram sessions as strings: Telethon's `StringSession` format (data centre + auth key).

A session string holds the data centre id, its IP address and port, and the 256-byte auth key;
whoever has it is logged in as the account, so store it encrypted. It is what
`AccountClient.session_string()` returns and what a client is created from.

`load_session` reads a string (or starts an empty session) and gives a brand-new session the
configured data centre: production Telegram by default, `TEST_DC` for Telegram's test
environment, or any address of a Telegram-compatible server. A stored session keeps its own data
centre: its auth key only exists there (Telegram may have moved the account to another DC).
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import Any

from telethon.sessions import MemorySession, StringSession  # type: ignore[import-untyped, unused-ignore]

from chatgate.domain.errors import InvalidInput


@dataclass(frozen=True)
class DcAddress:
    """An MTProto data centre: its id, IP address and port."""

    id: int
    ip: str
    port: int

    @classmethod
    def of(cls, value: DcAddress | tuple[int, str, int]) -> DcAddress:
        if isinstance(value, DcAddress):
            return value
        dc_id, ip, port = value
        return cls(int(dc_id), str(ip), int(port))


# Telethon's built-in default (production DC 2) and Telegram's test environment DC 2.
PRODUCTION_DC = DcAddress(2, "149.154.167.51", 443)
TEST_DC = DcAddress(2, "149.154.167.40", 443)


def new_session() -> Any:
    """An empty Telethon `StringSession` (no DC, no auth key)."""
    return StringSession()


def load_session(session_string: str | None, *, default_dc: DcAddress | None = None) -> Any:
    """A Telethon `StringSession` from a stored string ("" or None: a new, empty one).

    A session without a DC address (a new one) gets `default_dc` when given. Raises InvalidInput
    when the string is not a Telethon session string.
    """
    try:
        session = StringSession(session_string or None)
    except (ValueError, struct.error, binascii.Error, UnicodeError) as exc:
        raise InvalidInput(f"the Telegram session string is not valid: {exc}") from exc
    if default_dc is not None and not session.server_address:
        session.set_dc(default_dc.id, default_dc.ip, default_dc.port)
    return session


def dump_session(session: Any) -> str:
    """Any Telethon `MemorySession` (including `StringSession`) as a session string; "" when it
    has no auth key yet (nothing worth storing)."""
    if session is None or not isinstance(session, MemorySession) or session.auth_key is None:
        return ""
    if not session.server_address:
        raise InvalidInput("the Telegram session has an auth key but no data centre address")
    return str(StringSession.save(session))


def session_dc(session: Any) -> DcAddress | None:
    """The data centre a Telethon session points at (None: not set yet)."""
    if not session.server_address:
        return None
    return DcAddress(int(session.dc_id), str(session.server_address), int(session.port))


def session_auth_key(session: Any) -> bytes | None:
    """The raw 256-byte auth key of a Telethon session (None: not created yet)."""
    key = session.auth_key
    return None if key is None or key.key is None else bytes(key.key)
