"""A fake HashiCorp Vault transit secrets engine, as an ASGI app: a TEST AND DEMO STAND-IN ONLY.

No Vault or OpenBao server can be installed on our machines, so the Vault key provider is tested
against this small server instead. It follows Vault's documented HTTP API for the transit engine
closely enough for `hvac` (request fields, the `{"request_id", "data", ...}` response envelope,
`{"errors": [...]}` error bodies and Vault's status codes), and it really encrypts: every key
version is a random AES-256 key and ciphertexts are `vault:vN:base64(nonce || AES-GCM output)`,
so a tampered ciphertext fails to decrypt. Keys live in memory and vanish with the process.

Implemented endpoints (`{mount}` is any of the configured mounts, default `transit`):

- `GET|HEAD /v1/sys/health`                 health (unauthenticated; 200, or 503 while sealed)
- `POST /v1/{mount}/keys/{name}`            create a key (`type`: only `aes256-gcm96`)
- `GET  /v1/{mount}/keys/{name}`            read a key (`latest_version`, `keys`, `type`, ...)
- `POST /v1/{mount}/keys/{name}/rotate`     add a key version
- `POST /v1/{mount}/encrypt/{name}`         `plaintext` (base64) -> `ciphertext`, `key_version`
- `POST /v1/{mount}/decrypt/{name}`         `ciphertext` -> `plaintext` (base64)
- `POST /v1/{mount}/rewrap/{name}`          `ciphertext` -> `ciphertext` under the latest version

Every endpoint but health needs `X-Vault-Token` equal to the configured token (otherwise 403
`permission denied`), and `X-Vault-Namespace` selects a separate set of keys per namespace.
Optional `associated_data` (base64) is honoured on encrypt/decrypt. Not implemented: batch
input, derived/convergent keys, key configuration, deletion, export, signing, HMAC and every
other Vault API. Setting `FakeVaultTransit.sealed` makes the server answer like a sealed Vault.
It is NOT a security boundary and must never hold real secrets.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

KEY_TYPE = "aes256-gcm96"
_NONCE_BYTES = 12
_KEY_BYTES = 32
_CIPHERTEXT_PREFIX = "vault:v"


class _VaultHTTPError(Exception):
    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(", ".join(errors))
        self.status = status
        self.errors = list(errors)


def _bad_request(message: str) -> _VaultHTTPError:
    return _VaultHTTPError(400, message)


@dataclass
class _TransitKey:
    name: str
    versions: dict[int, bytes] = field(default_factory=dict)
    created: dict[int, int] = field(default_factory=dict)
    min_decryption_version: int = 1
    min_encryption_version: int = 0

    @property
    def latest_version(self) -> int:
        return max(self.versions)

    def add_version(self) -> int:
        version = max(self.versions, default=0) + 1
        self.versions[version] = secrets.token_bytes(_KEY_BYTES)
        self.created[version] = int(time.time())
        return version

    def describe(self) -> dict[str, Any]:
        return {
            "allow_plaintext_backup": False,
            "auto_rotate_period": 0,
            "deletion_allowed": False,
            "derived": False,
            "exportable": False,
            "imported_key": False,
            "keys": {str(v): ts for v, ts in sorted(self.created.items())},
            "latest_version": self.latest_version,
            "min_available_version": 0,
            "min_decryption_version": self.min_decryption_version,
            "min_encryption_version": self.min_encryption_version,
            "name": self.name,
            "supports_decryption": True,
            "supports_derivation": True,
            "supports_encryption": True,
            "supports_signing": False,
            "type": KEY_TYPE,
        }

    def encrypt(
        self, plaintext: bytes, associated_data: bytes | None, version: int | None
    ) -> tuple[str, int]:
        if version is None or version == 0:
            version = self.latest_version
        if version < self.min_encryption_version:
            raise _bad_request(
                "requested version for encryption is less than the minimum encryption key version"
            )
        if version not in self.versions:
            raise _bad_request("invalid key version")
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self.versions[version]).encrypt(nonce, plaintext, associated_data)
        return f"{_CIPHERTEXT_PREFIX}{version}:{base64.b64encode(nonce + sealed).decode()}", version

    def decrypt(self, ciphertext: str, associated_data: bytes | None) -> bytes:
        if not ciphertext.startswith(_CIPHERTEXT_PREFIX):
            raise _bad_request("invalid ciphertext: no prefix")
        version_text, sep, body = ciphertext[len(_CIPHERTEXT_PREFIX) :].partition(":")
        if not sep:
            raise _bad_request("invalid ciphertext: wrong number of fields")
        if not version_text.isdigit():
            raise _bad_request("invalid ciphertext: version number could not be decoded")
        version = int(version_text)
        if version > self.latest_version or version not in self.versions:
            raise _bad_request("invalid ciphertext: version is too new")
        if version < self.min_decryption_version:
            raise _bad_request("ciphertext or signature version is disallowed by policy (too old)")
        try:
            blob = base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise _bad_request("invalid ciphertext: could not decode base64") from exc
        if len(blob) <= _NONCE_BYTES:
            raise _bad_request("invalid ciphertext: too short")
        try:
            return AESGCM(self.versions[version]).decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data
            )
        except InvalidTag as exc:
            raise _bad_request("cipher: message authentication failed") from exc


class FakeVaultTransit:
    """In-memory transit engine state plus the Starlette app that serves it."""

    def __init__(self, *, token: str, mounts: Iterable[str] = ("transit",)) -> None:
        if not token:
            raise ValueError("the fake Vault needs a non-empty token")
        self._token = token.encode()
        self.mounts = {m.strip("/") for m in mounts}
        self.sealed = False
        # (namespace, mount) -> key name -> key
        self._keys: dict[tuple[str, str], dict[str, _TransitKey]] = {}
        self.cluster_id = str(uuid.uuid4())
        self.app = Starlette(
            routes=[
                Route("/v1/sys/health", self._health, methods=["GET", "HEAD"]),
                Route("/v1/{mount:path}/keys/{name}/rotate", self._rotate_key, methods=["POST", "PUT"]),
                Route("/v1/{mount:path}/keys/{name}", self._create_key, methods=["POST", "PUT"]),
                Route("/v1/{mount:path}/keys/{name}", self._read_key, methods=["GET"]),
                Route("/v1/{mount:path}/encrypt/{name}", self._encrypt, methods=["POST", "PUT"]),
                Route("/v1/{mount:path}/decrypt/{name}", self._decrypt, methods=["POST", "PUT"]),
                Route("/v1/{mount:path}/rewrap/{name}", self._rewrap, methods=["POST", "PUT"]),
            ],
            exception_handlers={_VaultHTTPError: self._error},
        )

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _ok(data: Mapping[str, Any]) -> JSONResponse:
        return JSONResponse(
            {
                "request_id": str(uuid.uuid4()),
                "lease_id": "",
                "renewable": False,
                "lease_duration": 0,
                "data": dict(data),
                "wrap_info": None,
                "warnings": None,
                "auth": None,
                "mount_type": "transit",
            }
        )

    @staticmethod
    async def _error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _VaultHTTPError)
        return JSONResponse({"errors": exc.errors}, status_code=exc.status)

    def _authorize(self, request: Request, route: str) -> tuple[str, str]:
        """Vault's order: sealed first, then the token, then the route's mount."""
        if self.sealed:
            raise _VaultHTTPError(503, "Vault is sealed")
        supplied = request.headers.get("x-vault-token", "").encode()
        if not hmac.compare_digest(supplied, self._token):
            raise _VaultHTTPError(403, "permission denied")
        mount = str(request.path_params["mount"]).strip("/")
        if mount not in self.mounts:
            raise _VaultHTTPError(404, f'no handler for route "{mount}/{route}". route entry not found.')
        namespace = request.headers.get("x-vault-namespace", "").strip("/")
        return namespace, mount

    def _keyring(self, request: Request, route: str) -> dict[str, _TransitKey]:
        return self._keys.setdefault(self._authorize(request, route), {})

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _bad_request(f"failed to parse JSON input: {exc}") from exc
        if not isinstance(body, dict):
            raise _bad_request("failed to parse JSON input: expected a JSON object")
        return body

    @staticmethod
    def _b64_field(body: Mapping[str, Any], name: str, what: str) -> bytes | None:
        value = body.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise _bad_request(f"failed to base64-decode {what}")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise _bad_request(f"failed to base64-decode {what}") from exc

    @staticmethod
    def _key_version(body: Mapping[str, Any]) -> int | None:
        value = body.get("key_version")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise _bad_request("key_version must be a non-negative integer")
        return int(value)

    @staticmethod
    def _reject_batch(body: Mapping[str, Any]) -> None:
        if body.get("batch_input"):
            raise _bad_request("batch_input is not supported by this fake Vault")

    @staticmethod
    def _new_key(name: str, body: Mapping[str, Any]) -> _TransitKey:
        key_type = body.get("type") or KEY_TYPE
        if key_type != KEY_TYPE:
            raise _bad_request(f'unknown key type "{key_type}" (this fake Vault only supports {KEY_TYPE})')
        if body.get("derived") or body.get("convergent_encryption"):
            raise _bad_request("derived and convergent keys are not supported by this fake Vault")
        key = _TransitKey(name)
        key.add_version()
        return key

    # -- endpoints --------------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        code_param = "sealedcode" if self.sealed else "activecode"
        default = 503 if self.sealed else 200
        raw_code = request.query_params.get(code_param, str(default))
        status = int(raw_code) if raw_code.isdigit() else default
        body = {
            "initialized": True,
            "sealed": self.sealed,
            "standby": False,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": "0.0.0+chatgate-fake-transit",
            "cluster_name": "chatgate-fake-vault",
            "cluster_id": self.cluster_id,
        }
        if request.method == "HEAD":
            return Response(status_code=status)
        return JSONResponse(body, status_code=status)

    async def _create_key(self, request: Request) -> Response:
        name = request.path_params["name"]
        keys = self._keyring(request, f"keys/{name}")
        body = await self._body(request)
        key = keys.get(name)
        if key is None:  # like Vault, creating an existing key changes nothing
            key = keys[name] = self._new_key(name, body)
        return self._ok(key.describe())

    async def _read_key(self, request: Request) -> Response:
        name = request.path_params["name"]
        key = self._keyring(request, f"keys/{name}").get(name)
        if key is None:
            raise _VaultHTTPError(404)  # Vault answers a missing key with 404 and no error text
        return self._ok(key.describe())

    async def _rotate_key(self, request: Request) -> Response:
        name = request.path_params["name"]
        key = self._keyring(request, f"keys/{name}/rotate").get(name)
        if key is None:
            raise _bad_request("key not found")
        key.add_version()
        return self._ok(key.describe())

    async def _encrypt(self, request: Request) -> Response:
        name = request.path_params["name"]
        keys = self._keyring(request, f"encrypt/{name}")
        body = await self._body(request)
        self._reject_batch(body)
        if "plaintext" not in body or body["plaintext"] is None:
            raise _bad_request("missing plaintext to encrypt")
        plaintext = self._b64_field(body, "plaintext", "plaintext") or b""
        aad = self._b64_field(body, "associated_data", "associated_data")
        key = keys.get(name)
        if key is None:  # Vault upserts the key when the token may create it
            key = keys[name] = self._new_key(name, body)
        ciphertext, version = key.encrypt(plaintext, aad, self._key_version(body))
        return self._ok({"ciphertext": ciphertext, "key_version": version})

    async def _decrypt(self, request: Request) -> Response:
        name = request.path_params["name"]
        keys = self._keyring(request, f"decrypt/{name}")
        body = await self._body(request)
        self._reject_batch(body)
        ciphertext = body.get("ciphertext")
        if not isinstance(ciphertext, str) or not ciphertext:
            raise _bad_request("missing ciphertext to decrypt")
        aad = self._b64_field(body, "associated_data", "associated_data")
        key = keys.get(name)
        if key is None:
            raise _bad_request("encryption key not found")
        plaintext = key.decrypt(ciphertext, aad)
        return self._ok({"plaintext": base64.b64encode(plaintext).decode()})

    async def _rewrap(self, request: Request) -> Response:
        name = request.path_params["name"]
        keys = self._keyring(request, f"rewrap/{name}")
        body = await self._body(request)
        self._reject_batch(body)
        ciphertext = body.get("ciphertext")
        if not isinstance(ciphertext, str) or not ciphertext:
            raise _bad_request("missing ciphertext to rewrap")
        key = keys.get(name)
        if key is None:
            raise _bad_request("encryption key not found")
        plaintext = key.decrypt(ciphertext, None)
        new_ciphertext, version = key.encrypt(plaintext, None, self._key_version(body))
        return self._ok({"ciphertext": new_ciphertext, "key_version": version})


def create_app(token: str, *, mounts: Iterable[str] = ("transit",)) -> Starlette:
    """A fresh, empty, unsealed fake Vault as an ASGI app (serve it with uvicorn for a demo)."""
    return FakeVaultTransit(token=token, mounts=mounts).app
