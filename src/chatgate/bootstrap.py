"""The one place that knows every concrete class: builds the container from settings."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from chatgate.config import Settings
from chatgate.delivery.http import SafeHttpClient
from chatgate.domain.clock import Clock, system_clock
from chatgate.domain.errors import ServiceUnavailable
from chatgate.domain.integrations import IntegrationKind
from chatgate.observability.metrics import ApiMetrics, DeliveryMetrics, SendMetrics
from chatgate.providers.http import ProviderHttp
from chatgate.providers.registry import default_registry
from chatgate.providers.telegram.adapter import TelegramBotAdapter
from chatgate.providers.telegram_user.live import LiveAccounts
from chatgate.providers.twilio.adapter import TwilioAdapter
from chatgate.providers.whatsapp_cloud.adapter import WhatsAppCloudAdapter
from chatgate.ratelimit.base import RateLimiter
from chatgate.ratelimit.memory import MemoryRateLimiter
from chatgate.ratelimit.pauses import BucketPauses, MemoryBucketPauses, RedisBucketPauses
from chatgate.ratelimit.policies import RatePolicies
from chatgate.ratelimit.redis import RedisRateLimiter
from chatgate.security.external_jwt import ExternalJwtVerifier
from chatgate.security.keyring.base import KeyProvider
from chatgate.security.keyring.envelope import SecretBox
from chatgate.security.keyring.local import KeyFile, LocalKeyProvider
from chatgate.security.redaction import REDACTOR, Redactor
from chatgate.security.tokens import TokenIssuer
from chatgate.services.access import AccessService
from chatgate.services.account_clients import AccountClientFactory, telethon_factory
from chatgate.services.audit import AuditService
from chatgate.services.auth import AuthService
from chatgate.services.channels import ChannelService
from chatgate.services.conversations import ConversationQueries
from chatgate.services.event_feed import EventFeed
from chatgate.services.fanout import EventHook, EventNotifier, Fanout
from chatgate.services.inbound_gateway import InboundGateway
from chatgate.services.inbound_processor import InboundProcessor
from chatgate.services.ingest import IngestWriter
from chatgate.services.ingest_postgres import PostgresIngestStore, asyncpg_dsn
from chatgate.services.ingest_sqlite import SqliteIngestStore
from chatgate.services.integration_cache import IntegrationCache
from chatgate.services.integrations import IntegrationService
from chatgate.services.key_rotation import KeyRotationService
from chatgate.services.maintenance import Maintenance
from chatgate.services.media import MediaService
from chatgate.services.notifier_redis import RedisEventBridge
from chatgate.services.projects import ProjectService
from chatgate.services.provider_actions import ProviderActions
from chatgate.services.provider_context import ProviderContexts
from chatgate.services.send_worker import SendWorker
from chatgate.services.sending import SendService
from chatgate.services.telegram_account_runtime import AccountRuntime
from chatgate.services.telegram_accounts import TelegramAccounts
from chatgate.services.telegram_bots import TelegramBots
from chatgate.services.telegram_polling import TelegramPoller
from chatgate.services.webhook_delivery import DeliveryPolicy, DeliveryWorker
from chatgate.services.webhook_fanout import LocalClaims, WebhookFanoutHook
from chatgate.services.webhooks import WebhookService
from chatgate.services.whatsapp import WhatsAppIntegrations
from chatgate.store import migrate
from chatgate.store.db import Database, sqlite_file
from chatgate.store.repositories.leases import LeaseStore
from chatgate.workers.breaker import CircuitBreakers
from chatgate.workers.queue import Handler, WorkQueue
from chatgate.workers.queue_memory import InProcessQueue
from chatgate.workers.queue_rabbitmq import RabbitMQQueue

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
        account_clients: AccountClientFactory | None = None,
    ) -> None:
        if account_clients is None and settings.telegram_account_sandbox_url:
            from chatgate.providers.telegram_user.remote import remote_factory

            account_clients = remote_factory(settings.telegram_account_sandbox_url)
        self.account_clients = account_clients or telethon_factory(settings)
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
        self.audit = AuditService(self.db, clock)
        self.key_rotation = KeyRotationService(self.db, self.box)
        self.maintenance = Maintenance(self.db, clock)
        self._build_pipeline()

    def _build_pipeline(self) -> None:
        """The message pipeline: queue, fan-out, ingest, inbound processing, sending."""
        s = self.settings
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.queue: WorkQueue = (
            RabbitMQQueue(s.rabbitmq_url, prefix=s.rabbitmq_prefix) if s.rabbitmq_url else InProcessQueue()
        )
        self.pauses: BucketPauses = (
            RedisBucketPauses(self.redis) if self.redis is not None else MemoryBucketPauses()
        )
        self.breakers = CircuitBreakers()
        self.rate_policies = RatePolicies(s.rate_limit_policies)
        self.outbound_http = SafeHttpClient(
            allow_hosts=s.outbound_allow_hosts,
            allow_http=s.outbound_allow_http,
            timeout=s.outbound_timeout_seconds,
        )
        self.provider_http = ProviderHttp(timeout=s.provider_timeout_seconds)
        self.live_accounts = LiveAccounts()
        self.adapters = default_registry(s, self.rate_policies, self.live_accounts)
        self.notifier = EventNotifier()
        self.event_bridge: RedisEventBridge | None = (
            RedisEventBridge(self.redis, self.notifier) if self.redis is not None else None
        )
        self.fanout = Fanout(
            self.queue.publish,
            self.notifier,
            self.event_hooks(),
            broadcast=self.event_bridge.publish if self.event_bridge is not None else None,
        )
        self.integrations = IntegrationService(self.db, self.box, self.redactor, self.clock, self.fanout)
        self.integration_cache = IntegrationCache(self.db, self.integrations)
        self.media = MediaService(self.db, self.clock)
        self.contexts = ProviderContexts(
            self.integrations,
            self.media,
            self.outbound_http,
            self.provider_http,
            self.clock,
            str(s.public_base_url) if s.public_base_url else None,
        )
        self.leases = LeaseStore(self.db)
        embedded_file = sqlite_file(s.effective_database_url)
        postgres_dsn = asyncpg_dsn(s.effective_database_url)
        self.ingest = IngestWriter(
            self.db,
            self.queue.publish,
            self.clock,
            row_store=SqliteIngestStore(embedded_file, gate=self.db.write_gate)
            if embedded_file
            else PostgresIngestStore(postgres_dsn)
            if postgres_dsn
            else None,
        )
        self.inbound = InboundGateway(
            self.integration_cache, self.adapters, self.ingest, self.contexts, self.clock, self.metrics
        )
        self.actions = ProviderActions(
            self.db, self.adapters, self.contexts, self.clock, media_max_bytes=s.media_fetch_max_bytes
        )
        telegram = self.adapters.get(IntegrationKind.TELEGRAM_BOT)
        assert isinstance(telegram, TelegramBotAdapter)
        self.telegram_bots = TelegramBots(
            self.db,
            self.integrations,
            self.contexts,
            telegram,
            self.leases,
            self.clock,
            max_connections=s.telegram_webhook_max_connections,
            health_concurrency=s.telegram_health_concurrency,
        )
        self.telegram_poller = TelegramPoller(
            self.telegram_bots,
            self.ingest,
            self.clock,
            self.worker_id,
            poll_timeout=s.telegram_poll_timeout_seconds,
            scan_interval=s.telegram_poll_scan_interval_seconds,
            max_bots=s.telegram_poll_max_bots,
        )
        self.channels = ChannelService(self.db, self.telegram_bots, self.clock)
        self.projects = ProjectService(self.db, self.clock)
        self.telegram_accounts = TelegramAccounts(
            self.db,
            self.integrations,
            self.account_clients,
            self.fanout,
            self.clock,
            qr_minutes=s.telegram_qr_login_minutes,
            live=self.live_accounts,
            leases=self.leases,
            owner_grace=s.telegram_account_lease_seconds * 1.5,
        )
        self.account_runtime = AccountRuntime(
            self.db,
            self.integrations,
            self.account_clients,
            self.leases,
            self.ingest,
            self.live_accounts,
            self.clock,
            self.worker_id,
            lease_seconds=s.telegram_account_lease_seconds,
            scan_interval=s.telegram_account_scan_interval_seconds,
        )
        cloud = self.adapters.get(IntegrationKind.WHATSAPP_CLOUD)
        twilio = self.adapters.get(IntegrationKind.TWILIO)
        assert isinstance(cloud, WhatsAppCloudAdapter)
        assert isinstance(twilio, TwilioAdapter)
        self.whatsapp = WhatsAppIntegrations(
            self.db, self.integrations, self.contexts, cloud, twilio, self.clock
        )
        self.feed = EventFeed(self.db, self.notifier)
        self.conversations = ConversationQueries(self.db, self.queue.publish, self.clock)
        lease = timedelta(seconds=s.job_lease_seconds)
        self.inbound_processor = InboundProcessor(
            self.db, self.adapters, self.fanout, self.clock, self.worker_id, lease=lease
        )
        self.sending = SendService(
            self.db, self.queue.publish, self.clock, idempotency_ttl=timedelta(hours=s.idempotency_ttl_hours)
        )
        self.webhooks = WebhookService(
            self.db,
            self.box,
            self.redactor,
            self.queue.publish,
            self.clock,
            allow_hosts=s.outbound_allow_hosts,
            allow_http=s.outbound_allow_http,
        )
        self.delivery_metrics = DeliveryMetrics(self.registry)
        self.delivery_worker = DeliveryWorker(
            self.db,
            self.box,
            self.outbound_http,
            self.rate_limiter,
            self.fanout,
            self.delivery_metrics,
            self.clock,
            self.worker_id,
            DeliveryPolicy(
                schedule=tuple(float(v) for v in s.webhook_retry_schedule_seconds),
                disable_after=timedelta(days=s.webhook_disable_after_days),
            ),
            lease=lease,
            record_linger=s.delivery_record_linger_ms / 1000,
        )
        self.send_worker = SendWorker(
            self.db,
            self.adapters,
            self.integrations,
            self.rate_limiter,
            self.pauses,
            self.breakers,
            self.fanout,
            self.contexts,
            self.clock,
            self.worker_id,
            max_attempts=s.send_max_attempts,
            metrics=SendMetrics(self.registry),
            lease=lease,
            max_in_flight=s.worker_concurrency,
        )

    def event_hooks(self) -> list[EventHook]:
        """Writers that run in the same transaction as new events (webhook deliveries)."""
        queue = self.queue
        local = LocalClaims(
            self.worker_id,
            timedelta(seconds=self.settings.job_lease_seconds),
            # embedded: this process's delivery worker takes the deliveries it creates at once
            lambda: isinstance(queue, InProcessQueue) and queue.consuming("deliver"),
        )
        return [WebhookFanoutHook(local)]

    def extra_consumers(self) -> dict[str, Handler]:
        """Queue topics beyond inbound and send, with their handlers."""
        return {"deliver": self.delivery_worker.handle}

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
        self.db.start()
        await self.queue.start()
        await self.ingest.start()

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
        if self.settings.rabbitmq_url:
            probes["broker"] = self.queue.check
        return probes

    async def aclose(self) -> None:
        await self.send_worker.aclose()
        await self.telegram_accounts.aclose()
        await self.ingest.aclose()
        await self.queue.aclose()
        await self.outbound_http.aclose()
        await self.provider_http.aclose()
        await self.rate_limiter.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.http.aclose()
        await self.box.provider.aclose()
        await self.db.aclose()
