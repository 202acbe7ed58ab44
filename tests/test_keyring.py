"""Envelope encryption: the local keyring, the Vault transit keyring, and SecretBox over both.

The Vault tests talk real HTTP (hvac -> requests -> uvicorn) to the fake transit engine in
`chatgate.sandbox.vault_transit`, because no Vault/OpenBao server can be installed here.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import socket
import stat
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from chatgate.domain.errors import ConfigurationError, CryptoError, ServiceUnavailable
from chatgate.sandbox.vault_transit import FakeVaultTransit
from chatgate.security.keyring.envelope import SecretBox
from chatgate.security.keyring.local import KeyFile, LocalKeyProvider, parse_key_spec
from chatgate.security.keyring.vault import VaultTransitKeyProvider
from tests.asgi_server import server_config

AAD = b"tenant:t1|integrations|int_1"
VAULT_TOKEN = "hvs.test-root-token-5f1c9a"
WRONG_TOKEN = "hvs.not-the-token-8d2e47"


def _flip_blob_byte(token: str) -> str:
    """Flip one bit of the AES-GCM ciphertext inside a `cg1.<wrapped>.<blob>` token."""
    head, _, blob_text = token.rpartition(".")
    blob = bytearray(base64.urlsafe_b64decode(blob_text))
    blob[-1] ^= 0x01
    return f"{head}.{base64.urlsafe_b64encode(bytes(blob)).decode()}"


def _flip_vault_ciphertext(wrapped: str) -> str:
    prefix, _, body = wrapped.rpartition(":")
    blob = bytearray(base64.b64decode(body))
    blob[len(blob) // 2] ^= 0x01
    return f"{prefix}:{base64.b64encode(bytes(blob)).decode()}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- local keyring ------------------------------------------------------------------------


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "keyring.json"


async def test_local_seal_open_roundtrip(key_path: Path) -> None:
    box = SecretBox(LocalKeyProvider(key_file=KeyFile(key_path)))
    token = await box.seal(b"xoxb-slack-bot-token", AAD)
    assert token.startswith("cg1.local:v1:")
    assert b"xoxb" not in token.encode()
    assert await box.open(token, AAD) == b"xoxb-slack-bot-token"
    # a box without the cached data key unwraps through the provider
    fresh = SecretBox(LocalKeyProvider(key_file=KeyFile(key_path)))
    assert await fresh.open(token, AAD) == b"xoxb-slack-bot-token"


async def test_local_wrong_aad_fails(key_path: Path) -> None:
    box = SecretBox(LocalKeyProvider(key_file=KeyFile(key_path)))
    token = await box.seal(b"secret", AAD)
    with pytest.raises(CryptoError, match="sealed for another row"):
        await box.open(token, b"tenant:t2|integrations|int_1")


async def test_local_tampered_token_fails(key_path: Path) -> None:
    provider = LocalKeyProvider(key_file=KeyFile(key_path))
    token = await SecretBox(provider).seal(b"secret", AAD)
    with pytest.raises(CryptoError, match="does not decrypt"):
        await SecretBox(provider).open(_flip_blob_byte(token), AAD)
    # tampering with the wrapped data key is caught by the key provider
    fmt, wrapped, blob = token.split(".")
    prefix, _, wrapped_body = wrapped.rpartition(":")
    raw = bytearray(base64.b64decode(wrapped_body))
    raw[-1] ^= 0x01
    bad_wrapped = f"{prefix}:{base64.b64encode(bytes(raw)).decode()}"
    with pytest.raises(CryptoError, match="does not decrypt under v1"):
        await SecretBox(provider).open(f"{fmt}.{bad_wrapped}.{blob}", AAD)
    with pytest.raises(CryptoError, match="not a chatgate sealed secret"):
        await SecretBox(provider).open("plaintext", AAD)


async def test_local_key_file_created_0600(key_path: Path) -> None:
    assert not key_path.exists()
    LocalKeyProvider(key_file=KeyFile(key_path))
    assert key_path.exists()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert not key_path.with_suffix(".tmp").exists()


async def test_local_rotate_keeps_old_tokens_and_reseal_moves_them(key_path: Path) -> None:
    provider = LocalKeyProvider(key_file=KeyFile(key_path))
    box = SecretBox(provider)
    old = await box.seal(b"old secret", AAD)
    assert box.key_version(old) == "v1"

    assert await provider.rotate() == "v2"
    assert await provider.primary_version() == "v2"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600

    assert await SecretBox(provider).open(old, AAD) == b"old secret"
    new = await box.seal(b"new secret", AAD)
    assert box.key_version(new) == "v2"

    moved = await box.reseal(old, AAD)
    assert box.key_version(moved) == "v2"
    assert moved != old
    assert await SecretBox(provider).open(moved, AAD) == b"old secret"


async def test_local_second_provider_sees_rotation_by_another(key_path: Path) -> None:
    """The server's provider picks up a version that `chatgate keys rotate` added to the file."""
    server = LocalKeyProvider(key_file=KeyFile(key_path))
    server_box = SecretBox(server)
    before = await server_box.seal(b"before", AAD)

    cli = LocalKeyProvider(key_file=KeyFile(key_path))
    assert await cli.rotate() == "v2"
    cli_box = SecretBox(cli)
    sealed_by_cli = await cli_box.seal(b"sealed after rotation", AAD)
    assert cli_box.key_version(sealed_by_cli) == "v2"

    # the server can open what the CLI sealed under the version it had not seen ...
    assert await SecretBox(server).open(sealed_by_cli, AAD) == b"sealed after rotation"
    # ... reports and uses the new primary ...
    assert await server.primary_version() == "v2"
    assert server_box.key_version(await server_box.seal(b"x", AAD)) == "v2"
    # ... and still opens its own old tokens
    assert await SecretBox(server).open(before, AAD) == b"before"


async def test_local_unknown_version_is_a_crypto_error() -> None:
    provider = LocalKeyProvider.from_spec(f"1:{base64.b64encode(secrets.token_bytes(32)).decode()}")
    with pytest.raises(CryptoError, match="v7 is not in the keyring"):
        await provider.unwrap("local:v7:AAAA")
    with pytest.raises(CryptoError, match="not a local keyring key"):
        provider.version_of("vault:v1:AAAA")


def test_parse_key_spec_accepts_versions() -> None:
    k1, k3 = secrets.token_bytes(32), secrets.token_bytes(32)
    spec = f" 1:{base64.b64encode(k1).decode()} , 3:{base64.b64encode(k3).decode()},"
    assert parse_key_spec(spec) == {1: k1, 3: k3}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "holds no key"),
        (" , ", "holds no key"),
        ("abc", "must look like '3:BASE64KEY'"),
        ("v1:AAAA", "must look like '3:BASE64KEY'"),
        ("1:not*base64", "version 1 is not base64"),
        (f"2:{base64.b64encode(b'short').decode()}", "version 2 must be 32 bytes"),
    ],
)
def test_parse_key_spec_errors_are_clear(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        parse_key_spec(spec)
    assert "CHATGATE_KEYRING_KEYS" in info.value.message


# -- the fake Vault server ----------------------------------------------------------------


@dataclass
class RunningVault:
    url: str
    state: FakeVaultTransit


@pytest.fixture(scope="module")
def fake_vault() -> Iterator[RunningVault]:
    """The fake transit engine served by uvicorn on a free 127.0.0.1 port, in a thread."""
    state = FakeVaultTransit(token=VAULT_TOKEN, mounts=("transit", "kms"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = server_config(state.app, lifespan="off")
    server = uvicorn.Server(config)
    # uvicorn only installs signal handlers in the main thread, so running it here is safe.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the fake Vault server did not start")
        time.sleep(0.01)
    try:
        yield RunningVault(f"http://127.0.0.1:{port}", state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


MakeProvider = Callable[..., VaultTransitKeyProvider]


@pytest.fixture
async def make_provider(fake_vault: RunningVault) -> AsyncIterator[MakeProvider]:
    """Providers against the fake Vault, each on its own fresh transit key unless told."""
    made: list[VaultTransitKeyProvider] = []

    def make(**options: Any) -> VaultTransitKeyProvider:
        options.setdefault("key_name", f"chatgate-{uuid.uuid4().hex[:10]}")
        url = options.pop("url", fake_vault.url)
        token = options.pop("token", VAULT_TOKEN)
        provider = VaultTransitKeyProvider(url, token, **options)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def _vault_get(fake_vault: RunningVault, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fake_vault.url) as client:
        return await client.get(path, headers={"X-Vault-Token": VAULT_TOKEN, **headers})


async def test_fake_vault_answers_in_vaults_shapes(fake_vault: RunningVault) -> None:
    async with httpx.AsyncClient(base_url=fake_vault.url) as client:
        health = await client.get("/v1/sys/health")
        assert health.status_code == 200
        assert health.json()["sealed"] is False
        assert health.json()["initialized"] is True

        denied = await client.get("/v1/transit/keys/anything", headers={"X-Vault-Token": WRONG_TOKEN})
        assert denied.status_code == 403
        assert denied.json() == {"errors": ["permission denied"]}
        assert (await client.get("/v1/transit/keys/anything")).status_code == 403

        auth = {"X-Vault-Token": VAULT_TOKEN}
        missing = await client.get("/v1/transit/keys/never-created", headers=auth)
        assert missing.status_code == 404
        assert missing.json() == {"errors": []}
        assert missing.headers["content-type"] == "application/json"

        unmounted = await client.get("/v1/nope/keys/k", headers=auth)
        assert unmounted.status_code == 404
        assert "no handler for route" in unmounted.json()["errors"][0]

        bad = await client.post("/v1/transit/decrypt/never-created", headers=auth, json={"ciphertext": "x"})
        assert bad.status_code == 400
        assert bad.json() == {"errors": ["encryption key not found"]}

        name = f"shape-{uuid.uuid4().hex[:8]}"
        created = await client.post(f"/v1/transit/keys/{name}", headers=auth, json={"type": "aes256-gcm96"})
        assert created.status_code == 200
        read = (await client.get(f"/v1/transit/keys/{name}", headers=auth)).json()
        assert read["data"]["latest_version"] == 1
        assert read["data"]["type"] == "aes256-gcm96"
        assert read["data"]["min_decryption_version"] == 1
        assert set(read["data"]["keys"]) == {"1"}

        plaintext = base64.b64encode(b"hello").decode()
        enc = await client.post(f"/v1/transit/encrypt/{name}", headers=auth, json={"plaintext": plaintext})
        assert enc.json()["data"]["key_version"] == 1
        ciphertext = enc.json()["data"]["ciphertext"]
        assert ciphertext.startswith("vault:v1:")
        dec = await client.post(f"/v1/transit/decrypt/{name}", headers=auth, json={"ciphertext": ciphertext})
        assert dec.json()["data"] == {"plaintext": plaintext}

        tampered = await client.post(
            f"/v1/transit/decrypt/{name}",
            headers=auth,
            json={"ciphertext": _flip_vault_ciphertext(ciphertext)},
        )
        assert tampered.status_code == 400
        assert tampered.json() == {"errors": ["cipher: message authentication failed"]}

        wrong_type = await client.post(f"/v1/transit/keys/x-{name}", headers=auth, json={"type": "rsa-2048"})
        assert wrong_type.status_code == 400


# -- Vault transit keyring ----------------------------------------------------------------


async def test_vault_wrap_unwrap_roundtrip(make_provider: MakeProvider) -> None:
    provider = make_provider()
    data_key = secrets.token_bytes(32)
    wrapped = await provider.wrap(data_key)
    assert wrapped.startswith("vault:v1:")
    assert provider.version_of(wrapped) == "v1"
    assert await provider.primary_version() == "v1"
    assert await provider.unwrap(wrapped) == data_key
    # another process with the same key name unwraps it too
    other = make_provider(key_name=provider.key_name)
    assert await other.unwrap(wrapped) == data_key


async def test_vault_rotate_old_ciphertexts_still_decrypt(make_provider: MakeProvider) -> None:
    provider = make_provider()
    old_key = secrets.token_bytes(32)
    old = await provider.wrap(old_key)

    assert await provider.rotate() == "v2"
    assert await provider.primary_version() == "v2"
    new = await provider.wrap(secrets.token_bytes(32))
    assert provider.version_of(new) == "v2"
    assert await provider.unwrap(old) == old_key

    assert await provider.rotate() == "v3"
    assert await provider.unwrap(old) == old_key


async def test_vault_rewrap_moves_to_latest_version(make_provider: MakeProvider) -> None:
    provider = make_provider()
    data_key = secrets.token_bytes(32)
    old = await provider.wrap(data_key)
    await provider.rotate()
    await provider.rotate()

    moved = await provider.rewrap(old)
    assert provider.version_of(moved) == "v3"
    assert moved != old
    assert await provider.unwrap(moved) == data_key
    # rewrapping something already at the latest version stays at that version
    assert provider.version_of(await provider.rewrap(moved)) == "v3"


async def test_vault_tampered_ciphertext_is_a_crypto_error(make_provider: MakeProvider) -> None:
    provider = make_provider()
    wrapped = await provider.wrap(secrets.token_bytes(32))
    with pytest.raises(CryptoError, match="message authentication failed"):
        await provider.unwrap(_flip_vault_ciphertext(wrapped))
    with pytest.raises(CryptoError, match="version is too new"):
        await provider.unwrap(wrapped.replace("vault:v1:", "vault:v9:"))


async def test_vault_version_of_needs_no_io_and_rejects_other_formats(make_provider: MakeProvider) -> None:
    # an unreachable Vault proves that version_of and the format check in unwrap do no I/O
    provider = make_provider(url=f"http://127.0.0.1:{_free_port()}")
    assert provider.version_of("vault:v12:abcd") == "v12"
    for wrapped in ("local:v1:abcd", "vault:v1", "vault:vx:abcd", "vault:1:abcd", "", "vault:v1:"):
        with pytest.raises(CryptoError, match="not a Vault transit ciphertext"):
            provider.version_of(wrapped)
    with pytest.raises(CryptoError, match="not a Vault transit ciphertext"):
        await provider.unwrap("local:v1:abcd")


async def test_vault_wrong_token_is_refused_without_leaking_it(make_provider: MakeProvider) -> None:
    good = make_provider()
    wrapped = await good.wrap(secrets.token_bytes(32))
    bad = make_provider(token=WRONG_TOKEN, key_name=good.key_name)

    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: bad.wrap(secrets.token_bytes(32)),
        lambda: bad.unwrap(wrapped),
        lambda: bad.rewrap(wrapped),
    ]
    for attempt in attempts:
        with pytest.raises(CryptoError) as info:
            await attempt()
        message = str(info.value)
        assert "permission denied" in message
        assert good.url in message
        assert WRONG_TOKEN not in message
        assert VAULT_TOKEN not in message

    with pytest.raises(ServiceUnavailable, match="permission denied") as ready:
        await bad.check()
    assert WRONG_TOKEN not in str(ready.value)
    assert WRONG_TOKEN not in repr(bad)


async def test_vault_unreachable_is_service_unavailable(make_provider: MakeProvider) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    provider = make_provider(url=url, timeout=1.0)
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: provider.wrap(secrets.token_bytes(32)),
        provider.check,
        provider.primary_version,
        provider.rotate,
    ]
    for attempt in attempts:
        with pytest.raises(ServiceUnavailable, match="unreachable") as info:
            await attempt()
        assert url in str(info.value)
        assert VAULT_TOKEN not in str(info.value)
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        await provider.unwrap("vault:v1:AAAA")


async def test_vault_that_never_answers_times_out(make_provider: MakeProvider) -> None:
    # a socket that accepts connections (kernel backlog) but never replies
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        provider = make_provider(url=url, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match=r"did not answer within 0\.3s"):
            await provider.unwrap("vault:v1:AAAA")
        assert time.monotonic() - started < 5


async def test_vault_check_creates_the_key(fake_vault: RunningVault, make_provider: MakeProvider) -> None:
    provider = make_provider()
    path = f"/v1/transit/keys/{provider.key_name}"
    assert (await _vault_get(fake_vault, path)).status_code == 404

    await provider.check()
    created = await _vault_get(fake_vault, path)
    assert created.status_code == 200
    assert created.json()["data"]["type"] == "aes256-gcm96"
    assert created.json()["data"]["latest_version"] == 1

    await provider.check()  # idempotent: no new version
    assert (await _vault_get(fake_vault, path)).json()["data"]["latest_version"] == 1


async def test_vault_first_wrap_creates_the_key(
    fake_vault: RunningVault, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    data_keys = [secrets.token_bytes(32) for _ in range(16)]
    wrapped = await asyncio.gather(*(provider.wrap(k) for k in data_keys))
    assert {provider.version_of(w) for w in wrapped} == {"v1"}
    assert await asyncio.gather(*(provider.unwrap(w) for w in wrapped)) == data_keys
    read = await _vault_get(fake_vault, f"/v1/transit/keys/{provider.key_name}")
    assert read.json()["data"]["type"] == "aes256-gcm96"


async def test_vault_sealed_is_service_unavailable(
    fake_vault: RunningVault, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    wrapped = await provider.wrap(secrets.token_bytes(32))
    fake_vault.state.sealed = True
    try:
        with pytest.raises(ServiceUnavailable, match="sealed"):
            await provider.check()
        with pytest.raises(ServiceUnavailable, match="Vault is sealed"):
            await provider.unwrap(wrapped)
    finally:
        fake_vault.state.sealed = False
    await provider.check()


async def test_vault_missing_mount_fails_check_clearly(make_provider: MakeProvider) -> None:
    provider = make_provider(mount="nope")
    with pytest.raises(ServiceUnavailable, match="transit engine mounted at 'nope'"):
        await provider.check()


async def test_vault_custom_mount_and_namespaces_are_separate(
    fake_vault: RunningVault, make_provider: MakeProvider
) -> None:
    root = make_provider(mount="kms")
    team = make_provider(mount="kms", key_name=root.key_name, namespace="team-a")
    data_key = secrets.token_bytes(32)
    wrapped = await root.wrap(data_key)
    assert (await _vault_get(fake_vault, f"/v1/kms/keys/{root.key_name}")).status_code == 200
    assert (await _vault_get(fake_vault, f"/v1/transit/keys/{root.key_name}")).status_code == 404

    # the same key name in another namespace is another key
    with pytest.raises(CryptoError, match="encryption key not found"):
        await team.unwrap(wrapped)
    await team.check()
    await team.rotate()
    assert await team.primary_version() == "v2"
    assert await root.primary_version() == "v1"
    with pytest.raises(CryptoError, match="message authentication failed"):
        await team.unwrap(wrapped)
    assert await root.unwrap(wrapped) == data_key


async def test_vault_constructor_rejects_missing_settings() -> None:
    with pytest.raises(ConfigurationError, match="token"):
        VaultTransitKeyProvider("http://127.0.0.1:8200", "")
    with pytest.raises(ConfigurationError, match="URL"):
        VaultTransitKeyProvider("", VAULT_TOKEN)
    with pytest.raises(ConfigurationError, match="key name"):
        VaultTransitKeyProvider("http://127.0.0.1:8200", VAULT_TOKEN, key_name="a/b")


async def test_secretbox_over_vault_roundtrip_and_reseal(make_provider: MakeProvider) -> None:
    provider = make_provider()
    box = SecretBox(provider)
    token = await box.seal(b"whatsapp-cloud-api-token", AAD)
    assert token.startswith("cg1.vault:v1:")
    assert box.key_version(token) == "v1"
    # a fresh box has no cached data key, so this unwraps through Vault
    assert await SecretBox(make_provider(key_name=provider.key_name)).open(token, AAD) == (
        b"whatsapp-cloud-api-token"
    )
    with pytest.raises(CryptoError):
        await SecretBox(provider).open(token, b"another row")
    with pytest.raises(CryptoError):
        await SecretBox(provider).open(_flip_blob_byte(token), AAD)

    await provider.rotate()
    moved = await box.reseal(token, AAD)
    assert box.key_version(moved) == "v2"
    assert await SecretBox(provider).open(moved, AAD) == b"whatsapp-cloud-api-token"
    assert await SecretBox(provider).open(token, AAD) == b"whatsapp-cloud-api-token"


async def test_vault_token_never_logged(
    caplog: pytest.LogCaptureFixture, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    with caplog.at_level(logging.DEBUG):
        await provider.check()
        await provider.rotate()
        await provider.unwrap(await provider.wrap(secrets.token_bytes(32)))
    assert "created Vault transit key" in caplog.text
    assert "rotated Vault transit key" in caplog.text
    assert VAULT_TOKEN not in caplog.text
