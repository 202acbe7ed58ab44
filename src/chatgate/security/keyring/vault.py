"""The Vault keyring: data keys wrapped by HashiCorp Vault's transit secrets engine.

The key-encryption key never leaves Vault: `wrap` sends the data key to transit `encrypt` and
stores Vault's ciphertext (`vault:v3:…`) as the wrapped key; `unwrap` asks transit `decrypt`.
Rotation is transit `rotate`; old versions keep decrypting, and `rewrap` moves a wrapped key to
the latest version inside Vault without the data key ever reaching us.

`hvac` is synchronous (built on `requests`), so every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Callable
from typing import Any

import hvac
import hvac.exceptions
import requests

from chatgate.domain.errors import ChatgateError, ConfigurationError, CryptoError, ServiceUnavailable

logger = logging.getLogger(__name__)

_PREFIX = "vault"
_KEY_TYPE = "aes256-gcm96"
_WRAPPED = re.compile(r"vault:v([0-9]+):.+", re.DOTALL)
# Answers that mean "Vault itself is not able to serve right now" rather than "you asked wrongly".
_UNAVAILABLE = (
    hvac.exceptions.VaultDown,
    hvac.exceptions.VaultNotInitialized,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    hvac.exceptions.RateLimitExceeded,
    hvac.exceptions.UnexpectedError,
)
_DENIED = (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)
# Health codes of a node that serves (active, standby, DR secondary, performance standby).
_HEALTHY = {200, 429, 472, 473}


class VaultTransitKeyProvider:
    """Key wrapping by a named key of Vault's transit engine.

    The transit key (`key_name` under `mount`, type aes256-gcm96) is created when it does not
    exist yet: by `check()` at start-up, or else on the first wrap, rotate or version read. The
    token therefore needs `create`/`update` on `{mount}/keys/{key_name}`, `read` on it,
    `update` on `{mount}/keys/{key_name}/rotate` for rotation, and `update` on
    `{mount}/encrypt|decrypt|rewrap/{key_name}`.

    The token is never logged nor put into an error message.
    """

    name = _PREFIX

    def __init__(
        self,
        url: str,
        token: str,
        *,
        mount: str = "transit",
        key_name: str = "chatgate",
        namespace: str | None = None,
        timeout: float = 5.0,
        client: hvac.Client | None = None,
    ) -> None:
        if not url:
            raise ConfigurationError("the Vault keyring needs the URL of the Vault server")
        if client is None and not token:
            raise ConfigurationError("the Vault keyring needs a Vault token")
        if not mount.strip("/") or not key_name or "/" in key_name:
            raise ConfigurationError("the Vault keyring needs a transit mount and a key name without '/'")
        self.url = url.rstrip("/")
        self.mount = mount.strip("/")
        self.key_name = key_name
        self.namespace = namespace or None
        self.timeout = timeout
        self._token = token
        self._owns_client = client is None
        self._client: Any = (
            client
            if client is not None
            else hvac.Client(url=self.url, token=token, namespace=self.namespace, timeout=timeout)
        )
        self._key_ready = False
        self._key_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"VaultTransitKeyProvider(url={self.url!r}, mount={self.mount!r}, key_name={self.key_name!r})"

    @property
    def _key_path(self) -> str:
        return f"{self.mount}/keys/{self.key_name}"

    # -- KeyProvider ------------------------------------------------------------------------

    async def wrap(self, data_key: bytes) -> str:
        await self._ensure_key()
        response = await self._call(
            "encrypt a data key",
            self._client.secrets.transit.encrypt_data,
            name=self.key_name,
            plaintext=base64.b64encode(data_key).decode(),
            mount_point=self.mount,
        )
        return self._ciphertext_of(response, "encrypt")

    async def unwrap(self, wrapped: str) -> bytes:
        version = self.version_of(wrapped)  # refuse foreign formats before any I/O
        response = await self._call(
            f"decrypt a data key wrapped under {version}",
            self._client.secrets.transit.decrypt_data,
            name=self.key_name,
            ciphertext=wrapped,
            mount_point=self.mount,
        )
        try:
            return base64.b64decode(_data(response)["plaintext"], validate=True)
        except (KeyError, TypeError, binascii.Error) as exc:
            raise CryptoError(f"Vault at {self.url} answered decrypt without a base64 plaintext") from exc

    async def rewrap(self, wrapped: str) -> str:
        """Re-encrypt a wrapped key under the latest key version, inside Vault (key rotation).

        The data key is never revealed to us; the result is a new `vault:vN:…` string.
        """
        version = self.version_of(wrapped)
        response = await self._call(
            f"rewrap a data key wrapped under {version}",
            self._client.secrets.transit.rewrap_data,
            name=self.key_name,
            ciphertext=wrapped,
            mount_point=self.mount,
        )
        return self._ciphertext_of(response, "rewrap")

    async def rotate(self) -> str:
        await self._ensure_key()
        await self._call(
            "rotate the transit key",
            self._client.secrets.transit.rotate_key,
            name=self.key_name,
            mount_point=self.mount,
        )
        version = f"v{await self._latest_version()}"
        logger.info("rotated Vault transit key %s at %s to %s", self._key_path, self.url, version)
        return version

    async def primary_version(self) -> str:
        await self._ensure_key()
        return f"v{await self._latest_version()}"

    def version_of(self, wrapped: str) -> str:
        match = _WRAPPED.fullmatch(wrapped)
        if match is None:
            raise CryptoError("wrapped key is not a Vault transit ciphertext ('vault:vN:…')")
        return f"v{int(match.group(1))}"

    async def check(self) -> None:
        """Readiness: Vault answers, is unsealed, and the transit key exists (created if absent)."""
        health = await self._call(
            "read its health", self._client.sys.read_health_status, method="GET", standby_ok=True
        )
        status = 200 if isinstance(health, dict) else int(getattr(health, "status_code", 0))
        sealed = isinstance(health, dict) and bool(health.get("sealed"))
        if sealed or status == 503:
            raise ServiceUnavailable(f"Vault at {self.url} is sealed")
        if status == 501:
            raise ServiceUnavailable(f"Vault at {self.url} is not initialized")
        if status not in _HEALTHY:
            raise ServiceUnavailable(f"Vault at {self.url} reports itself unhealthy (HTTP {status})")
        try:
            await self._ensure_key(force=True)
        except ServiceUnavailable:
            raise
        except ChatgateError as exc:
            raise ServiceUnavailable(exc.message) from exc

    async def aclose(self) -> None:
        if self._owns_client:
            await asyncio.to_thread(self._client.adapter.close)

    # -- internals --------------------------------------------------------------------------

    async def _ensure_key(self, *, force: bool = False) -> None:
        if self._key_ready and not force:
            return
        async with self._key_lock:
            if self._key_ready and not force:
                return
            info = await self._read_key()
            if info is None:
                await self._call(
                    f"create the transit key {self._key_path}",
                    self._client.secrets.transit.create_key,
                    name=self.key_name,
                    key_type=_KEY_TYPE,
                    mount_point=self.mount,
                )
                logger.info("created Vault transit key %s (%s) at %s", self._key_path, _KEY_TYPE, self.url)
                info = await self._read_key()
                if info is None:
                    raise CryptoError(
                        f"Vault at {self.url} does not show transit key {self._key_path} it created"
                    )
            if not info.get("supports_encryption", True) or not info.get("supports_decryption", True):
                raise ConfigurationError(
                    f"Vault transit key {self._key_path} (type {info.get('type')}) cannot encrypt and decrypt"
                )
            self._key_ready = True

    async def _read_key(self) -> dict[str, Any] | None:
        """The key's description, or None when Vault says it does not exist."""
        try:
            response = await self._call(
                f"read the transit key {self._key_path}",
                self._client.secrets.transit.read_key,
                name=self.key_name,
                mount_point=self.mount,
                missing_ok=True,
            )
        except _Missing:
            self._key_ready = False
            return None
        return _data(response)

    async def _latest_version(self) -> int:
        info = await self._read_key()
        if info is None:
            raise CryptoError(f"transit key {self._key_path} is missing from Vault at {self.url}")
        try:
            return int(info["latest_version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CryptoError(f"Vault at {self.url} answered a key read without latest_version") from exc

    def _ciphertext_of(self, response: Any, operation: str) -> str:
        try:
            ciphertext = _data(response)["ciphertext"]
        except (KeyError, TypeError) as exc:
            raise CryptoError(f"Vault at {self.url} answered {operation} without a ciphertext") from exc
        if not isinstance(ciphertext, str) or _WRAPPED.fullmatch(ciphertext) is None:
            raise CryptoError(
                f"Vault at {self.url} answered {operation} with an unexpected ciphertext format"
            )
        return ciphertext

    async def _call(
        self, action: str, func: Callable[..., Any], /, *, missing_ok: bool = False, **kwargs: Any
    ) -> Any:
        """Run one hvac call in a thread and translate its failures into chatgate errors."""
        try:
            return await asyncio.to_thread(func, **kwargs)
        except requests.exceptions.Timeout as exc:
            raise ServiceUnavailable(
                f"Vault at {self.url} did not answer within {self.timeout:g}s (trying to {action})"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise ServiceUnavailable(
                f"Vault at {self.url} is unreachable (trying to {action}): {type(exc).__name__}"
            ) from exc
        except hvac.exceptions.InvalidPath as exc:
            if missing_ok and not exc.errors:  # Vault's answer for a key that does not exist
                raise _Missing from exc
            raise CryptoError(
                f"Vault at {self.url} could not {action}: {self._detail(exc)}"
                f" (is a transit engine mounted at '{self.mount}'?)"
            ) from exc
        except _DENIED as exc:
            raise CryptoError(
                f"Vault at {self.url} refused to {action}: {self._detail(exc)}"
                f" (check the Vault token and its policy on {self.mount}/*/{self.key_name})"
            ) from exc
        except _UNAVAILABLE as exc:
            raise ServiceUnavailable(f"Vault at {self.url} could not {action}: {self._detail(exc)}") from exc
        except hvac.exceptions.VaultError as exc:  # InvalidRequest and anything else Vault refuses
            raise CryptoError(f"Vault at {self.url} could not {action}: {self._detail(exc)}") from exc

    def _detail(self, exc: Any) -> str:
        errors = getattr(exc, "errors", None)
        text = "; ".join(str(e) for e in errors) if errors else f"HTTP error {type(exc).__name__}"
        if self._token:
            text = text.replace(self._token, "[token]")
        return text


class _Missing(Exception):
    """Vault answered 404 with no error text: the object does not exist."""


def _data(response: Any) -> dict[str, Any]:
    if not isinstance(response, dict) or not isinstance(response.get("data"), dict):
        raise CryptoError("Vault answered without a JSON 'data' object")
    data: dict[str, Any] = response["data"]
    return data
