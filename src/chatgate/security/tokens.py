"""Our own user tokens: short-lived HS256 access JWTs and single-use refresh JWTs."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from chatgate.domain.errors import Unauthenticated

ALGORITHM = "HS256"
AUDIENCE = "chatgate-api"


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    tenant_id: str
    role: str


@dataclass(frozen=True)
class RefreshClaims:
    user_id: str
    tenant_id: str
    token_id: str


class TokenIssuer:
    def __init__(self, secret: str, *, issuer: str, access_ttl: int, refresh_ttl: int) -> None:
        if len(secret) < 32:
            raise ValueError("the JWT secret must be at least 32 characters")
        self._secret = secret
        self.issuer = issuer
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def access_token(self, *, user_id: str, tenant_id: str, role: str, now: datetime) -> str:
        return self._encode(
            {"sub": user_id, "tid": tenant_id, "role": role, "typ": "access", "jti": secrets.token_hex(8)},
            now,
            self.access_ttl,
        )

    def refresh_token(self, *, user_id: str, tenant_id: str, token_id: str, now: datetime) -> str:
        return self._encode(
            {"sub": user_id, "tid": tenant_id, "jti": token_id, "typ": "refresh"}, now, self.refresh_ttl
        )

    def refresh_expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.refresh_ttl)

    def is_ours(self, token: str) -> bool:
        """True when the token claims our issuer (checked before the signature, to route it)."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return False
        return bool(claims.get("iss") == self.issuer)

    def verify_access(self, token: str) -> AccessClaims:
        claims = self._decode(token, "access")
        return AccessClaims(user_id=claims["sub"], tenant_id=claims["tid"], role=claims["role"])

    def verify_refresh(self, token: str) -> RefreshClaims:
        claims = self._decode(token, "refresh")
        return RefreshClaims(user_id=claims["sub"], tenant_id=claims["tid"], token_id=claims["jti"])

    def _encode(self, claims: dict[str, Any], now: datetime, ttl: int) -> str:
        payload = {
            **claims,
            "iss": self.issuer,
            "aud": AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + ttl,
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def _decode(self, token: str, kind: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated(f"the {kind} token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the {kind} token is invalid: {exc}") from exc
        if claims.get("typ") != kind:
            raise Unauthenticated(f"this is not a {kind} token")
        for field in ("tid",) + (("role",) if kind == "access" else ("jti",)):
            if not isinstance(claims.get(field), str):
                raise Unauthenticated(f"the {kind} token lacks the '{field}' claim")
        return claims
