"""SecretBox: seal and open secrets with envelope encryption.

Each secret gets a fresh 256-bit data key (AES-256-GCM); the data key is wrapped by the key
provider. The associated data binds a ciphertext to its row (tenant, table, id) so a sealed
value copied into another row or tenant does not open.

Token format: `cg1.<wrapped-key>.<base64 nonce+ciphertext>`; the wrapped key names its version.
"""

from __future__ import annotations

import base64
import secrets
from collections import OrderedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chatgate.domain.errors import CryptoError
from chatgate.security.keyring.base import KeyProvider

_FORMAT = "cg1"
_NONCE_BYTES = 12


class SecretBox:
    def __init__(self, provider: KeyProvider, *, cache_size: int = 4096) -> None:
        self.provider = provider
        # Unwrapping may be a network call (Vault); cache data keys by their wrapped form.
        self._dek_cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_size = cache_size

    async def seal(self, plaintext: bytes, aad: bytes) -> str:
        data_key = secrets.token_bytes(32)
        wrapped = await self.provider.wrap(data_key)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        self._remember(wrapped, data_key)
        return f"{_FORMAT}.{wrapped}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    async def open(self, token: str, aad: bytes) -> bytes:
        wrapped, blob = self._split(token)
        data_key = self._dek_cache.get(wrapped)
        if data_key is None:
            data_key = await self.provider.unwrap(wrapped)
            self._remember(wrapped, data_key)
        try:
            return AESGCM(data_key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise CryptoError("secret does not decrypt: tampered, or sealed for another row") from exc

    async def reseal(self, token: str, aad: bytes) -> str:
        """Decrypt and encrypt again under the provider's current primary key (key rotation)."""
        return await self.seal(await self.open(token, aad), aad)

    def key_version(self, token: str) -> str:
        return self.provider.version_of(self._split(token)[0])

    def _remember(self, wrapped: str, data_key: bytes) -> None:
        self._dek_cache[wrapped] = data_key
        self._dek_cache.move_to_end(wrapped)
        while len(self._dek_cache) > self._cache_size:
            self._dek_cache.popitem(last=False)

    @staticmethod
    def _split(token: str) -> tuple[str, bytes]:
        head, _, rest = token.partition(".")
        wrapped, _, blob_text = rest.rpartition(".")
        if head != _FORMAT or not wrapped or not blob_text:
            raise CryptoError("not a chatgate sealed secret")
        try:
            return wrapped, base64.urlsafe_b64decode(blob_text)
        except ValueError as exc:
            raise CryptoError("sealed secret is not valid base64") from exc
