"""Tokens of an existing user service (issuer, audience, JWKS) mapped to tenant and role."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chatgate.config import Settings
from chatgate.domain.access import Role
from chatgate.domain.errors import Unauthenticated
from chatgate.security.external_jwt import ExternalJwtVerifier
from tests.conftest import Api, random_key_spec, start_api

ISSUER = "https://users.example.test"
AUDIENCE = "integration-service"


class UserService:
    """Stands in for the external user service: an RSA key pair and its JWKS document."""

    def __init__(self) -> None:
        self.keys = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.jwks_requests = 0

    def rotate(self) -> None:
        self.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append(jwk | {"kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            assert request.url == httpx.URL(f"{ISSUER}/.well-known/jwks.json")
            self.jwks_requests += 1
            return httpx.Response(200, json=self.jwks())

        return httpx.MockTransport(handle)

    def token(self, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "exp": now + 300, "iat": now}
        payload |= {"tenant_id": "acme", "role": "admin"}
        payload |= claims
        return jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def user_service() -> UserService:
    return UserService()


@pytest.fixture(scope="module")
async def external_api(
    user_service: UserService, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    tmp = tmp_path_factory.mktemp("external-jwt")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp,
        keyring_keys=random_key_spec(),
        jwt_secret="x" * 40,
        run_workers_in_api=False,
        external_jwt_issuer=ISSUER,
        external_jwt_audience=AUDIENCE,
        external_jwt_jwks_url=f"{ISSUER}/.well-known/jwks.json",
        external_jwt_role_map={"support-lead": "admin", "support": "agent"},
    )
    async for running in start_api(settings, "sqlite", http_transport=user_service.transport()):
        tenant = await running.tenant()
        linked = await running.client.patch(
            "/v1/tenant", json={"external_id": "acme"}, headers=await tenant.owner_headers()
        )
        assert linked.status_code == 200, linked.text
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_valid_token_maps_tenant_and_role(external_api: Api, user_service: UserService) -> None:
    response = await external_api.client.get("/v1/me", headers=bearer(user_service.token()))
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["actor_type"] == "external"
    assert me["actor_id"] == "user-42"
    assert me["role"] == "admin"
    mapped = await external_api.client.get("/v1/me", headers=bearer(user_service.token(role="support")))
    assert mapped.json()["role"] == "agent"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"iss": "https://evil.example"}, "not issued by a trusted issuer"),
        ({"aud": "another-service"}, "audience is not this service"),
        ({"exp": int(time.time()) - 10}, "expired"),
        ({"tenant_id": "unknown-tenant"}, "no tenant is linked"),
        ({"role": "janitor"}, "maps to no chatgate role"),
        ({"tenant_id": None}, "no 'tenant_id' claim"),
    ],
)
async def test_bad_tokens_are_rejected_with_a_reason(
    external_api: Api, user_service: UserService, claims: dict[str, Any], message: str
) -> None:
    token = user_service.token(**claims)
    response = await external_api.client.get("/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert message in response.json()["detail"]


async def test_token_signed_by_another_key_is_rejected(external_api: Api, user_service: UserService) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "x",
        "exp": now + 60,
        "tenant_id": "acme",
        "role": "owner",
    }
    forged = jwt.encode(payload, forger, algorithm="RS256", headers={"kid": "k1"})
    response = await external_api.client.get("/v1/me", headers=bearer(forged))
    assert response.status_code == 401
    assert "invalid" in response.json()["detail"]


async def test_hs256_token_with_the_public_key_is_rejected(
    external_api: Api, user_service: UserService
) -> None:
    """The classic algorithm-confusion attack: only the configured asymmetric algorithms pass."""
    header_only = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60, "tenant_id": "acme"},
        "guessable-secret-guessable-secret",
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    response = await external_api.client.get("/v1/me", headers=bearer(header_only))
    assert response.status_code == 401
    assert "algorithm" in response.json()["detail"]


async def test_rotated_user_service_keys_are_fetched_with_a_throttle() -> None:
    service = UserService()
    now = [1000.0]
    async with httpx.AsyncClient(transport=service.transport()) as http:
        verifier = ExternalJwtVerifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks_url=f"{ISSUER}/.well-known/jwks.json",
            algorithms=["RS256"],
            tenant_claim="tenant_id",
            role_claim="role",
            role_map={},
            default_role=None,
            http=http,
            cache_seconds=300,
            clock=lambda: now[0],
        )
        assert (await verifier.verify(service.token())).tenant_ref == "acme"
        service.rotate()
        now[0] += 5  # an unknown key id right after a fetch does not hammer the user service
        with pytest.raises(Unauthenticated, match="does not publish"):
            await verifier.verify(service.token(kid="k2"))
        assert service.jwks_requests == 1
        now[0] += 31
        assert (await verifier.verify(service.token(kid="k2"))).role == Role.ADMIN
        assert service.jwks_requests == 2


def test_partial_external_settings_are_refused() -> None:
    make: Callable[..., Settings] = Settings
    with pytest.raises(ValueError, match="_AUDIENCE and _JWKS_URL"):
        make(_env_file=None, external_jwt_issuer=ISSUER)
