"""Authentication: user login and refresh, API keys, our JWTs and an external user service's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from chatgate.domain.access import ROLE_PERMISSIONS, Role, Scope, permissions_for_scopes
from chatgate.domain.clock import Clock
from chatgate.domain.errors import InvalidInput, NotFound, Unauthenticated
from chatgate.domain.principal import ActorType, Principal
from chatgate.security.api_keys import parse_api_key, secret_matches
from chatgate.security.external_jwt import ExternalJwtVerifier
from chatgate.security.passwords import DUMMY_HASH, verify_password
from chatgate.security.tokens import TokenIssuer
from chatgate.store.db import Database
from chatgate.store.repositories.api_keys import ApiKeyRepository
from chatgate.store.repositories.tenants import AuthLookup, TenantDirectory
from chatgate.store.repositories.users import UserRepository

# Writing last_used_at on every request would turn reads into writes; a minute is precise enough.
_TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    tenant_id: str
    user_id: str
    role: str


class AuthService:
    def __init__(
        self, db: Database, tokens: TokenIssuer, external: ExternalJwtVerifier | None, clock: Clock
    ) -> None:
        self.db = db
        self.tokens = tokens
        self.external = external
        self.clock = clock

    async def login(self, email: str, password: str, tenant_slug: str | None) -> TokenPair:
        async with self.db.transaction() as session:
            candidates = await AuthLookup(session).users_by_email(email)
            if tenant_slug is not None:
                tenant = await TenantDirectory(session).by_slug(tenant_slug)
                candidates = [u for u in candidates if tenant is not None and u.tenant_id == tenant.id]
            if len(candidates) > 1:
                raise InvalidInput("this e-mail belongs to several tenants: say which one with 'tenant'")
            user = candidates[0] if candidates else None
            valid = await verify_password(user.password_hash if user else DUMMY_HASH, password)
            if user is None or not valid or not user.is_active:
                raise Unauthenticated("wrong e-mail or password")
            now = self.clock()
            user.last_login_at = now
            return await self._issue(UserRepository(session, user.tenant_id), user.id, user.role)

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self.tokens.verify_refresh(refresh_token)
        async with self.db.transaction() as session:
            users = UserRepository(session, claims.tenant_id)
            try:
                await users.use_refresh_token(claims.token_id, self.clock())
                user = await users.get(claims.user_id)
            except NotFound as exc:
                raise Unauthenticated(exc.message) from exc
            if not user.is_active:
                raise Unauthenticated("this user is deactivated")
            return await self._issue(users, user.id, user.role)

    async def _issue(self, users: UserRepository, user_id: str, role: str) -> TokenPair:
        now = self.clock()
        stored = await users.add_refresh_token(user_id=user_id, expires_at=self.tokens.refresh_expiry(now))
        return TokenPair(
            access_token=self.tokens.access_token(
                user_id=user_id, tenant_id=users.tenant_id, role=role, now=now
            ),
            refresh_token=self.tokens.refresh_token(
                user_id=user_id, tenant_id=users.tenant_id, token_id=stored.id, now=now
            ),
            expires_in=self.tokens.access_ttl,
            tenant_id=users.tenant_id,
            user_id=user_id,
            role=role,
        )

    async def authenticate_api_key(self, presented: str) -> Principal:
        parts = parse_api_key(presented)
        if parts is None:
            raise Unauthenticated("the API key is malformed")
        lookup, secret = parts
        async with self.db.transaction() as session:
            key = await AuthLookup(session).api_key_by_lookup(lookup)
            if key is None or not secret_matches(secret, key.secret_hash):
                raise Unauthenticated("the API key is not valid")
            now = self.clock()
            if key.revoked_at is not None:
                raise Unauthenticated("the API key has been revoked")
            if key.expires_at is not None and key.expires_at <= now:
                raise Unauthenticated("the API key has expired")
            if key.last_used_at is None or now - key.last_used_at > _TOUCH_INTERVAL:
                await ApiKeyRepository(session, key.tenant_id).touch(key.id, now)
            scopes = frozenset(Scope(s) for s in key.scopes)
            return Principal(
                tenant_id=key.tenant_id,
                actor_type=ActorType.API_KEY,
                actor_id=key.id,
                permissions=permissions_for_scopes(scopes),
                scopes=scopes,
            )

    async def authenticate_bearer(self, token: str) -> Principal:
        if self.tokens.is_ours(token):
            claims = self.tokens.verify_access(token)
            async with self.db.sessions() as session:
                try:
                    user = await UserRepository(session, claims.tenant_id).get(claims.user_id)
                except NotFound as exc:
                    raise Unauthenticated("the user of this token no longer exists") from exc
            if not user.is_active:
                raise Unauthenticated("this user is deactivated")
            role = Role(user.role)  # the current role, so a demotion takes effect at once
            return Principal(
                tenant_id=user.tenant_id,
                actor_type=ActorType.USER,
                actor_id=user.id,
                permissions=ROLE_PERMISSIONS[role],
                role=role,
            )
        if self.external is not None and self.external.claims_issuer(token):
            identity = await self.external.verify(token)
            async with self.db.sessions() as session:
                tenant = await TenantDirectory(session).by_external_id(identity.tenant_ref)
            if tenant is None:
                raise Unauthenticated(
                    f"no tenant is linked to the user service's tenant '{identity.tenant_ref}'"
                )
            return Principal(
                tenant_id=tenant.id,
                actor_type=ActorType.EXTERNAL,
                actor_id=identity.subject,
                permissions=ROLE_PERMISSIONS[identity.role],
                role=identity.role,
            )
        raise Unauthenticated("the bearer token was not issued by a trusted issuer")
