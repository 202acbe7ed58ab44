"""The one place that knows every concrete class: builds the container from settings."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from chatgate.config import Settings
from chatgate.domain.clock import Clock, system_clock
from chatgate.domain.errors import ServiceUnavailable
from chatgate.observability.metrics import ApiMetrics
from chatgate.ratelimit.base import RateLimiter
from chatgate.ratelimit.memory import MemoryRateLimiter
from chatgate.ratelimit.redis import RedisRateLimiter
from chatgate.security.external_jwt import ExternalJwtVerifier
from chatgate.security.keyring.base import KeyProvider
from chatgate.security.keyring.envelope import SecretBox
from chatgate.security.keyring.local import KeyFile, LocalKeyProvider
from chatgate.security.redaction import REDACTOR, Redactor
from chatgate.security.tokens import TokenIssuer
from chatgate.services.access import AccessService
from chatgate.services.audit import AuditService
from chatgate.services.auth import AuthService
from chatgate.services.integrations import IntegrationService
from chatgate.services.key_rotation import KeyRotationService
from chatgate.store import migrate
from chatgate.store.db import Database

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]


def read_or_create_secret_file(path: Path, make: Callable[[], str]) -> str:
    """A secret generated on first run and kept with 0600 permissions (embedded mode)."""
    if path.exists():
        return path.read_text("utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    return value


def build_key_provider(settings: Settings) -> KeyProvider:
    if settings.keyring_backend == "vault":
        from chatgate.security.keyring.vault import VaultTransitKeyProvider

        assert settings.vault_url is not None
        assert settings.vault_token is not None
        return VaultTransitKeyProvider(
            settings.vault_url,
            settings.vault_token.get_secret_value(),
            mount=settings.vault_transit_mount,
            key_name=settings.vault_transit_key,
            namespace=settings.vault_namespace,
        )
    if settings.keyring_keys is not None:
        return LocalKeyProvider.from_spec(settings.keyring_keys.get_secret_value())
    if not settings.is_embedded:
        log.warning(
            "keyring keys come from %s; every server must share it. Set CHATGATE_KEYRING_KEYS or use Vault",
            settings.effective_keyring_file,
        )
    return LocalKeyProvider(key_file=KeyFile(settings.effective_keyring_file))


class Container:
    """Everything a process needs, wired once. Tests build it with their own settings and clock."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        http_transport: httpx.AsyncBaseTransport | None = None,
        redactor: Redactor = REDACTOR,
        key_provider: KeyProvider | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.redactor = redactor
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.effective_database_url, pool_size=settings.database_pool_size)
        self.http = httpx.AsyncClient(transport=http_transport, timeout=10.0)
        self.registry = CollectorRegistry()
        self.metrics = ApiMetrics(self.registry)
        self.box = SecretBox(key_provider or build_key_provider(settings))
        self.redis: Redis | None = Redis.from_url(settings.redis_url) if settings.redis_url else None
        self.rate_limiter: RateLimiter = (
            RedisRateLimiter(self.redis) if self.redis is not None else MemoryRateLimiter()
        )
        self.tokens = TokenIssuer(
            self._jwt_secret(),
            issuer=settings.jwt_issuer,
            access_ttl=settings.jwt_access_ttl_seconds,
            refresh_ttl=settings.jwt_refresh_ttl_seconds,
        )
        self.external_jwt = self._external_verifier()
        self.auth = AuthService(self.db, self.tokens, self.external_jwt, clock)
        self.access = AccessService(self.db, clock)
        self.integrations = IntegrationService(self.db, self.box, redactor, clock)
        self.audit = AuditService(self.db, clock)
        self.key_rotation = KeyRotationService(self.db, self.box)

    def _jwt_secret(self) -> str:
        if self.settings.jwt_secret is not None:
            secret = self.settings.jwt_secret.get_secret_value()
        else:
            secret = read_or_create_secret_file(
                self.settings.data_dir / "jwt.secret", lambda: secrets.token_urlsafe(48)
            )
        self.redactor.register(secret)
        return secret

    def _external_verifier(self) -> ExternalJwtVerifier | None:
        s = self.settings
        if not (s.external_jwt_issuer and s.external_jwt_audience and s.external_jwt_jwks_url):
            return None
        return ExternalJwtVerifier(
            issuer=s.external_jwt_issuer,
            audience=s.external_jwt_audience,
            jwks_url=s.external_jwt_jwks_url,
            algorithms=s.external_jwt_algorithms,
            tenant_claim=s.external_jwt_tenant_claim,
            role_claim=s.external_jwt_role_claim,
            role_map=s.external_jwt_role_map,
            default_role=s.external_jwt_default_role,
            http=self.http,
            cache_seconds=s.external_jwt_jwks_cache_seconds,
        )

    async def start(self) -> None:
        if self.settings.auto_migrate:
            await migrate.upgrade(self.settings.effective_database_url)
        await self.box.provider.check()

    def readiness_probes(self) -> dict[str, Probe]:
        probes: dict[str, Probe] = {"database": self.db.ping, "keyring": self.box.provider.check}
        if self.redis is not None:
            redis = self.redis

            async def redis_ping() -> None:
                try:
                    await redis.ping()
                except Exception as exc:
                    raise ServiceUnavailable(f"Redis is not reachable: {type(exc).__name__}") from exc

            probes["redis"] = redis_ping
        return probes

    async def aclose(self) -> None:
        await self.rate_limiter.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.http.aclose()
        await self.box.provider.aclose()
        await self.db.aclose()
