"""API keys: `cgk_<lookup>_<secret>`, recognisable in leaks, stored as a SHA-256 of the secret.

The secret has 190 bits of entropy, so a fast hash is safe (no password stretching needed)
and lets every request authenticate with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "cgk_"
_PATTERN = re.compile(r"^cgk_([a-z0-9]{12})_([A-Za-z0-9_-]{32})$")
KEY_PATTERN = re.compile(r"cgk_[a-z0-9]{12}_[A-Za-z0-9_-]{32}")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class NewApiKey:
    plaintext: str
    lookup: str
    secret_hash: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_api_key() -> NewApiKey:
    lookup = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    secret = secrets.token_urlsafe(24)
    return NewApiKey(f"{PREFIX}{lookup}_{secret}", lookup, hash_secret(secret))


def parse_api_key(value: str) -> tuple[str, str] | None:
    """Split a presented key into (lookup, secret), or None when it is not shaped like ours."""
    match = _PATTERN.match(value)
    return (match.group(1), match.group(2)) if match else None


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
