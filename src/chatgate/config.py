"""Settings: environment variables `CHATGATE_*` and an optional `.env`, validated at start.

Every provider base URL is a setting so the sandbox (or a test server) can stand in for it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from chatgate.domain.access import Role

CsvList = Annotated[list[str], NoDecode]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHATGATE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- process -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    data_dir: Path = Path("data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    run_workers_in_api: bool = True

    # --- storage and shared state ---------------------------------------------------------
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default is a SQLite file in data_dir"
    )
    database_pool_size: int = Field(10, ge=1, le=500)
    auto_migrate: bool = True
    redis_url: str | None = None
    rabbitmq_url: str | None = None
    rabbitmq_prefix: str = Field(
        "chatgate", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Queue name prefix"
    )

    # --- workers ----------------------------------------------------------------------------
    worker_concurrency: int = Field(32, ge=1, le=1000, description="Jobs run at once per topic per process")
    delivery_concurrency: int = Field(
        200,
        ge=1,
        le=2000,
        description="Webhook deliveries in flight per process (each mostly waits on its endpoint)",
    )
    inbound_batch_linger_ms: float = Field(
        6.0,
        ge=0,
        le=1000,
        description=(
            "While inbound processing is busy, how long a batch that is not full waits for more of "
            "its tenant's events (fewer, larger batches cost less per event; 0 turns it off)"
        ),
    )
    delivery_record_linger_ms: float = Field(
        20.0,
        ge=0,
        le=1000,
        description=(
            "How long recording webhook delivery outcomes (a bookkeeping transaction) waits to "
            "gather more of them; claims, and endpoints ordered per conversation, never wait "
            "(0 turns it off)"
        ),
    )
    sweeper_interval_seconds: float = Field(1.0, gt=0, le=60)
    redispatch_after_seconds: float = Field(
        30.0, ge=1, description="Re-publish a due job not picked up by then"
    )
    send_max_attempts: int = Field(8, ge=1, le=50)
    job_lease_seconds: float = Field(
        60.0, ge=1, le=3600, description="A dead worker's jobs are taken over after this"
    )
    idempotency_ttl_hours: int = Field(24, ge=1, le=24 * 30)

    # --- tenant webhooks -----------------------------------------------------------------
    webhook_retry_schedule_seconds: CsvList = ["0", "5", "300", "1800", "7200", "18000", "36000", "36000"]
    webhook_disable_after_days: float = Field(5.0, gt=0, le=60)

    # --- outbound HTTP (webhook provider, tenant webhooks): SSRF protection -------------------
    outbound_allow_hosts: CsvList = []
    outbound_allow_http: bool = False
    outbound_timeout_seconds: float = Field(15.0, gt=0, le=120)

    # --- HTTP surface ----------------------------------------------------------------------
    public_base_url: AnyHttpUrl | None = None
    cors_origins: CsvList = []
    trusted_proxies: CsvList = ["127.0.0.1"]
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_upload_bytes: int = Field(
        10 * 1_048_576, ge=1024, description="Largest media upload (POST /v1/media)"
    )
    rate_limit_key_per_second: float = Field(50.0, gt=0)
    rate_limit_key_burst: int = Field(100, ge=1)
    rate_limit_ip_per_second: float = Field(20.0, gt=0)
    rate_limit_ip_burst: int = Field(100, ge=1)

    rate_limit_policies: dict[str, dict[str, list[float]]] = Field(
        default_factory=dict, description='Provider send budgets, e.g. {"telegram_bot": {"chat": [1, 3]}}'
    )

    # --- encryption at rest ---------------------------------------------------------------
    keyring_backend: Literal["local", "vault"] = "local"
    keyring_keys: SecretStr | None = Field(
        None,
        description="'VERSION:BASE64KEY,...'; the highest version encrypts. Default: a key file in data_dir",
    )
    keyring_file: Path | None = None
    vault_url: str | None = None
    vault_token: SecretStr | None = None
    vault_namespace: str | None = None
    vault_transit_mount: str = "transit"
    vault_transit_key: str = "chatgate"

    # --- our own user tokens --------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(None, description="HS256 secret; generated into data_dir when unset")
    jwt_issuer: str = "chatgate"
    jwt_access_ttl_seconds: int = Field(900, ge=30)
    jwt_refresh_ttl_seconds: int = Field(30 * 24 * 3600, ge=60)

    # --- tokens of an existing user service (seed 001's "User Service") --------------------
    external_jwt_issuer: str | None = None
    external_jwt_audience: str | None = None
    external_jwt_jwks_url: str | None = None
    external_jwt_algorithms: CsvList = ["RS256", "ES256"]
    external_jwt_tenant_claim: str = "tenant_id"
    external_jwt_role_claim: str = "role"
    external_jwt_role_map: dict[str, Role] = {}
    external_jwt_default_role: Role | None = None
    external_jwt_jwks_cache_seconds: int = Field(300, ge=0)

    # --- provider base URLs (the sandbox replaces them in demo mode and tests) -------------
    telegram_api_base: str = "https://api.telegram.org"
    graph_api_base: str = "https://graph.facebook.com"
    graph_api_version: str = "v23.0"
    twilio_api_base: str = "https://api.twilio.com"
    google_oauth_base: str = "https://oauth2.googleapis.com"
    google_auth_base: str = "https://accounts.google.com"
    google_calendar_base: str = "https://www.googleapis.com/calendar/v3"
    fcm_api_base: str = "https://fcm.googleapis.com"
    provider_timeout_seconds: float = Field(30.0, gt=0, le=300)
    media_fetch_max_bytes: int = Field(20 * 1_048_576, ge=1024)

    # --- Telegram bots ---------------------------------------------------------------------
    telegram_webhook_max_connections: int = Field(40, ge=1, le=100)
    telegram_health_interval_seconds: float = Field(600.0, ge=1)
    telegram_health_concurrency: int = Field(20, ge=1, le=500)
    telegram_poll_scan_interval_seconds: float = Field(5.0, gt=0)
    telegram_poll_timeout_seconds: int = Field(25, ge=0, le=50)
    telegram_poll_max_bots: int = Field(500, ge=0)
    # --- Telegram user accounts (MTProto) ----------------------------------------------------
    telegram_api_id: int | None = Field(None, description="Your app's api_id from my.telegram.org")
    telegram_api_hash: SecretStr | None = None
    telegram_mtproto_dc: str | None = Field(
        None, description="'DC_ID,IP,PORT' where new sessions start (Telegram's test DC, another server)"
    )
    telegram_rsa_public_key: str | None = Field(None, description="The server's RSA public key (PEM)")
    telegram_test_mode: bool = False
    telegram_account_lease_seconds: float = Field(20.0, ge=3, le=120)
    telegram_account_scan_interval_seconds: float = Field(5.0, gt=0)
    telegram_qr_login_minutes: float = Field(5.0, gt=0, le=60)
    telegram_account_sandbox_url: str | None = Field(
        None, description="Run user accounts against the accounts sandbox (demo/tests) instead of Telegram"
    )
    whatsapp_seed_integration_id: str | None = Field(
        None, description="The WhatsApp Cloud integration behind seed 003's /api/whatsapp/* endpoints"
    )
    telegram_token_in_url_webhooks: bool = Field(
        False, description="Accept seed 000's /api/integrations/webhooks/telegram/{bot_token}/ path"
    )

    _split = field_validator(
        "cors_origins",
        "trusted_proxies",
        "external_jwt_algorithms",
        "outbound_allow_hosts",
        "webhook_retry_schedule_seconds",
        mode="before",
    )(_split_csv)

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.keyring_backend == "vault" and not (self.vault_url and self.vault_token):
            raise ValueError(
                "CHATGATE_KEYRING_BACKEND=vault needs CHATGATE_VAULT_URL and CHATGATE_VAULT_TOKEN"
            )
        external = [self.external_jwt_issuer, self.external_jwt_audience, self.external_jwt_jwks_url]
        if any(external) and not all(external):
            raise ValueError(
                "external JWTs need all of CHATGATE_EXTERNAL_JWT_ISSUER, _AUDIENCE and _JWKS_URL"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'chatgate.db').as_posix()}"

    @field_validator("webhook_retry_schedule_seconds")
    @classmethod
    def _schedule_numbers(cls, value: list[str]) -> list[str]:
        try:
            numbers = [float(v) for v in value]
        except ValueError as exc:
            raise ValueError("the retry schedule is a comma-separated list of seconds") from exc
        if not numbers or any(n < 0 for n in numbers):
            raise ValueError("the retry schedule needs at least one non-negative delay")
        return value

    @property
    def redispatch_after(self) -> timedelta:
        return timedelta(seconds=self.redispatch_after_seconds)

    @property
    def is_embedded(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_keyring_file(self) -> Path:
        return self.keyring_file or self.data_dir / "keyring.json"
