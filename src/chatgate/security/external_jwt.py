"""Tokens issued by an existing user service (seed 001's "User Service"), verified by JWKS.

Issuer, audience and JWKS URL come from settings. The JWKS is cached and refetched when a
token names a key id we do not know (the service rotated its keys), at most every 30 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from chatgate.domain.access import Role
from chatgate.domain.errors import ServiceUnavailable, Unauthenticated

_MIN_REFETCH_SECONDS = 30.0


@dataclass(frozen=True)
class ExternalIdentity:
    subject: str
    tenant_ref: str
    role: Role


class ExternalJwtVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        algorithms: list[str],
        tenant_claim: str,
        role_claim: str,
        role_map: Mapping[str, Role],
        default_role: Role | None,
        http: httpx.AsyncClient,
        cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._audience = audience
        self._jwks_url = jwks_url
        self._algorithms = algorithms
        self._tenant_claim = tenant_claim
        self._role_claim = role_claim
        self._role_map = dict(role_map)
        self._default_role = default_role
        self._http = http
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    def claims_issuer(self, token: str) -> bool:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return False
        return bool(claims.get("iss") == self.issuer)

    async def verify(self, token: str) -> ExternalIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the bearer token is not a JWT: {exc}") from exc
        if header.get("alg") not in self._algorithms:
            raise Unauthenticated(f"token algorithm {header.get('alg')!r} is not accepted")
        key = await self._key_for(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated("the token's audience is not this service") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthenticated("the token's issuer is not trusted") from exc
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is invalid: {exc}") from exc
        tenant_ref = claims.get(self._tenant_claim)
        if not isinstance(tenant_ref, str | int) or tenant_ref == "":
            raise Unauthenticated(f"the token has no '{self._tenant_claim}' claim naming the tenant")
        return ExternalIdentity(str(claims["sub"]), str(tenant_ref), self._role(claims.get(self._role_claim)))

    def _role(self, raw: object) -> Role:
        values = raw if isinstance(raw, list) else [raw]
        roles = [self._map_role(v) for v in values if isinstance(v, str)]
        granted = [r for r in roles if r is not None]
        if granted:
            order = [Role.OWNER, Role.ADMIN, Role.AGENT, Role.VIEWER]
            return min(granted, key=order.index)
        if self._default_role is not None:
            return self._default_role
        raise Unauthenticated(f"the token's '{self._role_claim}' claim maps to no chatgate role")

    def _map_role(self, value: str) -> Role | None:
        if value in self._role_map:
            return self._role_map[value]
        try:
            return Role(value)
        except ValueError:
            return None

    async def _key_for(self, kid: object) -> jwt.PyJWK:
        now = self._clock()
        stale = now - self._fetched_at > self._cache_seconds
        unknown = not isinstance(kid, str) or kid not in self._keys
        if stale or (unknown and now - self._fetched_at > _MIN_REFETCH_SECONDS):
            async with self._lock:
                if self._fetched_at < now:
                    await self._refresh()
        if isinstance(kid, str) and kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise Unauthenticated("the token is signed with a key the user service does not publish")

    async def _refresh(self) -> None:
        try:
            response = await self._http.get(self._jwks_url, timeout=5.0)
            response.raise_for_status()
            jwk_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, json.JSONDecodeError, jwt.PyJWTError) as exc:
            if self._keys:
                return  # keep serving the cached keys while the user service is down
            raise ServiceUnavailable(f"cannot fetch the user service's JWKS: {type(exc).__name__}") from exc
        self._keys = {k.key_id: k for k in jwk_set.keys if k.key_id}
        if not self._keys and jwk_set.keys:
            self._keys = {"": jwk_set.keys[0]}
        self._fetched_at = self._clock()
