"""The key-provider interface every keyring backend implements.

A provider never sees the secrets themselves, only 32-byte data keys (DEKs) that it wraps
under its key-encryption key. Wrapped keys are strings tagged with the provider and the key
version (`local:v3:…`, `vault:v2:…`) so any version can still be unwrapped after rotation.
"""

from __future__ import annotations

from typing import Protocol


class KeyProvider(Protocol):
    name: str

    async def wrap(self, data_key: bytes) -> str:
        """Encrypt a data key under the current primary key version."""

    async def unwrap(self, wrapped: str) -> bytes:
        """Decrypt a data key wrapped under any version still known."""

    async def rotate(self) -> str:
        """Create a new primary key version and return its label (for example `v4`)."""

    async def primary_version(self) -> str:
        """Label of the version new wraps use."""

    def version_of(self, wrapped: str) -> str:
        """Label of the version that wrapped this key (no I/O)."""

    async def check(self) -> None:
        """Raise ServiceUnavailable/CryptoError when the provider cannot work (readiness)."""

    async def aclose(self) -> None:
        """Release connections."""
