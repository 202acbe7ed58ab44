"""The local keyring: versioned 256-bit keys in settings or in a 0600 file.

The file backend lets `chatgate keys rotate` add a version while servers run: a server that
meets a version it does not know, or sees the file change, reloads it before giving up.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatgate.domain.errors import ConfigurationError, CryptoError

_PREFIX = "local"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_WRAP_AAD = b"chatgate-dek"


def parse_key_spec(spec: str) -> dict[int, bytes]:
    """Parse 'VERSION:BASE64KEY,…' as given in CHATGATE_KEYRING_KEYS."""
    keys: dict[int, bytes] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        version_text, sep, key_text = part.partition(":")
        if not sep or not version_text.isdigit():
            raise ConfigurationError("CHATGATE_KEYRING_KEYS entries must look like '3:BASE64KEY'")
        try:
            key = base64.b64decode(key_text, validate=True)
        except ValueError as exc:
            raise ConfigurationError(f"CHATGATE_KEYRING_KEYS version {version_text} is not base64") from exc
        if len(key) != _KEY_BYTES:
            raise ConfigurationError(f"CHATGATE_KEYRING_KEYS version {version_text} must be 32 bytes")
        keys[int(version_text)] = key
    if not keys:
        raise ConfigurationError("CHATGATE_KEYRING_KEYS holds no key")
    return keys


@dataclass
class _KeySet:
    keys: dict[int, bytes]
    primary: int


class KeyFile:
    """A JSON key file written atomically with 0600 permissions."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def version_stamp(self) -> tuple[int, int]:
        """Changes whenever the file is replaced (each save is a new inode), however fast."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return (0, 0)
        return (stat.st_ino, stat.st_mtime_ns)

    def load(self) -> _KeySet:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            keys = {int(v): base64.b64decode(k) for v, k in raw["keys"].items()}
            primary = int(raw["primary"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"keyring file {self.path} is unreadable: {exc}") from exc
        if primary not in keys:
            raise ConfigurationError(f"keyring file {self.path} names a primary version it does not hold")
        return _KeySet(keys, primary)

    def save(self, keyset: _KeySet) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {
                "primary": keyset.primary,
                "keys": {str(v): base64.b64encode(k).decode() for v, k in keyset.keys.items()},
            },
            indent=2,
        )
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def create(self) -> _KeySet:
        keyset = _KeySet({1: secrets.token_bytes(_KEY_BYTES)}, 1)
        self.save(keyset)
        return keyset


class LocalKeyProvider:
    """AES-256-GCM key wrapping with versioned keys held by this process."""

    name = _PREFIX

    def __init__(self, *, keys: dict[int, bytes] | None = None, key_file: KeyFile | None = None) -> None:
        if keys is None and key_file is None:
            raise ConfigurationError("the local keyring needs keys or a key file")
        self._file = key_file if keys is None else None
        if keys is not None:
            self._keyset = _KeySet(dict(keys), max(keys))
            self._stamp = (0, 0)
        else:
            assert key_file is not None
            self._keyset = key_file.load() if key_file.exists() else key_file.create()
            self._stamp = key_file.version_stamp()

    @classmethod
    def from_spec(cls, spec: str) -> LocalKeyProvider:
        return cls(keys=parse_key_spec(spec))

    def _refresh_if_changed(self) -> None:
        if self._file is not None and self._file.version_stamp() != self._stamp:
            self._stamp = self._file.version_stamp()
            self._keyset = self._file.load()

    async def wrap(self, data_key: bytes) -> str:
        self._refresh_if_changed()
        version = self._keyset.primary
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self._keyset.keys[version]).encrypt(nonce, data_key, _WRAP_AAD)
        return f"{_PREFIX}:v{version}:{base64.b64encode(nonce + sealed).decode()}"

    async def unwrap(self, wrapped: str) -> bytes:
        version = self._parse_version(wrapped)
        if version not in self._keyset.keys:
            self._refresh_if_changed()
        key = self._keyset.keys.get(version)
        if key is None:
            raise CryptoError(f"key version v{version} is not in the keyring")
        blob = base64.b64decode(wrapped.split(":", 2)[2])
        try:
            return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _WRAP_AAD)
        except InvalidTag as exc:
            raise CryptoError(f"data key does not decrypt under v{version}") from exc

    async def rotate(self) -> str:
        if self._file is None:
            # A key made here would live only in this process's memory and be lost at exit,
            # leaving secrets nobody can decrypt. Keys from settings are rotated by the operator.
            raise ConfigurationError(
                "the keyring comes from CHATGATE_KEYRING_KEYS: add a new, higher version there, "
                "restart every process, then run `chatgate keys reseal`"
            )
        self._refresh_if_changed()
        new_version = max(self._keyset.keys) + 1
        self._keyset.keys[new_version] = secrets.token_bytes(_KEY_BYTES)
        self._keyset.primary = new_version
        if self._file is not None:
            self._file.save(self._keyset)
            self._stamp = self._file.version_stamp()
        return f"v{new_version}"

    async def primary_version(self) -> str:
        self._refresh_if_changed()
        return f"v{self._keyset.primary}"

    def version_of(self, wrapped: str) -> str:
        return f"v{self._parse_version(wrapped)}"

    @staticmethod
    def _parse_version(wrapped: str) -> int:
        parts = wrapped.split(":", 2)
        if (
            len(parts) != 3
            or parts[0] != _PREFIX
            or not parts[1].startswith("v")
            or not parts[1][1:].isdigit()
        ):
            raise CryptoError("wrapped key is not a local keyring key")
        return int(parts[1][1:])

    async def check(self) -> None:
        self._refresh_if_changed()

    async def aclose(self) -> None:
        return None
