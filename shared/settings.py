"""Typed settings read once from the environment and `.env`."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECRET = "dev-insecure-secret-change-me"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_db_url(url: str, offset: int) -> str:
    """`url` moved `offset` logical databases past the one it names (0 when it names none)."""
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit((parts.scheme, parts.netloc, f"/{base + offset}", parts.query, parts.fragment))


class Settings(BaseSettings):
    """Every setting the service reads; names match the environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    devora_env: Literal["development", "test", "production"] = "development"
    port: int = 8000

    database_url: str = f"sqlite:///{PROJECT_ROOT / 'instance' / 'devora.db'}"
    # Unset means "start an embedded server" for the run command; other processes
    # then receive the URL it chose through the environment.
    redis_url: str | None = None
    broker_url: str | None = None
    cache_redis_url: str | None = None
    ratelimit_storage_uri: str | None = None
    redis_socket_timeout: float = 0.5
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Secrets are SecretStr so that printing or logging settings never shows them.
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    jwt_issuer: str = "devora"
    jwt_audience: str = "devora-api"
    access_token_ttl_seconds: int = Field(900, ge=60, le=86400)
    refresh_token_ttl_seconds: int = Field(30 * 86400, ge=3600)

    stripe_api_key: SecretStr = SecretStr("")
    stripe_webhook_secret: SecretStr = SecretStr("")
    # Only to point the SDK at a local Stripe peer (tests, development).
    stripe_api_base: str | None = None
    stripe_timeout_seconds: float = Field(10.0, gt=0, le=80)
    stripe_max_network_retries: int = Field(2, ge=0, le=5)
    stripe_webhook_tolerance_seconds: int = Field(300, ge=1, le=3600)
    # Unset: the API version the installed SDK is pinned to.
    stripe_api_version: str | None = None
    webhook_dedup_ttl_seconds: int = Field(7 * 86400, ge=3 * 86400)
    webhook_max_attempts: int = Field(5, ge=1, le=20)
    # How far back webhooks.sweep_missed asks Stripe for events (Stripe retries for 3 days).
    webhook_sweep_lookback_seconds: int = Field(3 * 86400, ge=3600)

    # Plans: the Stripe price of each paid plan, and every plan's monthly generation
    # quota and concurrent-job limit.
    plan_pro_price_id: str = "price_pro_monthly"
    plan_team_price_id: str = "price_team_monthly"
    plan_free_monthly_generations: int = Field(20, ge=0)
    plan_free_concurrent_jobs: int = Field(1, ge=1)
    plan_pro_monthly_generations: int = Field(500, ge=0)
    plan_pro_concurrent_jobs: int = Field(3, ge=1)
    plan_team_monthly_generations: int = Field(5000, ge=0)
    plan_team_concurrent_jobs: int = Field(10, ge=1)

    # OAuth login providers; a provider is offered when its client id is set. The URLs
    # default to the real providers' and are settings so tests can use a local one.
    oauth_google_client_id: str | None = None
    oauth_google_client_secret: SecretStr = SecretStr("")
    oauth_google_metadata_url: str = "https://accounts.google.com/.well-known/openid-configuration"
    oauth_github_client_id: str | None = None
    oauth_github_client_secret: SecretStr = SecretStr("")
    oauth_github_authorize_url: str = "https://github.com/login/oauth/authorize"
    oauth_github_token_url: str = "https://github.com/login/oauth/access_token"
    oauth_github_api_base_url: str = "https://api.github.com/"
    oauth_timeout_seconds: float = Field(10.0, gt=0)
    oauth_state_ttl_seconds: int = Field(600, ge=60, le=3600)
    oauth_code_ttl_seconds: int = Field(60, ge=10, le=600)
    # Public base URL of this API (for OAuth callback URLs); unset: taken from the request.
    public_api_url: str | None = None

    # /metrics: a bearer token, and/or the networks allowed to scrape without one.
    metrics_token: SecretStr = SecretStr("")
    metrics_allowed_networks: str = "127.0.0.1/32,::1/128"

    frontend_url: str = "http://localhost:3000"
    trusted_proxy_hops: int = Field(0, ge=0, le=5)

    cache_default_timeout: int = 300
    project_list_cache_seconds: int = 900

    ratelimit_enabled: bool = True
    ratelimit_default: str = "300 per minute"
    ratelimit_login: str = "5 per minute"
    ratelimit_register: str = "10 per hour"
    ratelimit_refresh: str = "30 per minute"
    ratelimit_oauth_exchange: str = "20 per minute"

    max_request_bytes: int = 8 * 1024 * 1024
    max_file_bytes: int = 1024 * 1024
    max_project_bytes: int = 20 * 1024 * 1024
    max_files_per_project: int = 2000
    max_path_depth: int = 16
    max_path_segment_length: int = 128

    # Jobs: time limits, retries with exponential backoff and jitter, redelivery cap.
    job_soft_time_limit_seconds: int = Field(300, ge=5)
    job_hard_time_limit_seconds: int = Field(360, ge=10)
    job_max_attempts: int = Field(4, ge=1, le=20)
    job_retry_backoff_seconds: float = Field(1.0, gt=0)
    job_retry_backoff_max_seconds: float = Field(60.0, gt=0)
    # A running job renews its lease while alive; a redelivered task waits for an
    # unexpired lease, so a job never runs twice at once.
    job_lease_seconds: int = Field(15, ge=2)
    job_validate_timeout_seconds: float = Field(120.0, gt=0)
    job_max_repairs: int = Field(2, ge=0, le=10)
    job_poll_interval_seconds: int = Field(2, ge=1, le=60)
    generation_provider: str = "embedded"
    # Generated code runs in a bubblewrap sandbox with these limits (docs/OPERATIONS.md).
    sandbox_backend: Literal["bwrap", "none"] = "bwrap"
    # Development only: run generated code without a sandbox where none works. Refused in production.
    sandbox_allow_unsandboxed: bool = False
    sandbox_cpu_seconds: int = Field(60, ge=1, le=3600)
    sandbox_memory_mb: int = Field(512, ge=128, le=65536)
    sandbox_max_processes: int = Field(64, ge=8, le=4096)
    sandbox_max_file_mb: int = Field(16, ge=1, le=4096)
    sandbox_scratch_mb: int = Field(256, ge=16, le=65536)
    # Unset: the worker's own interpreter, else the system's python3 (whichever the sandbox can read).
    sandbox_python: str | None = None
    # A queued job younger than this may still be on its way to the broker from the web process.
    outbox_grace_seconds: float = Field(10.0, ge=0)
    idempotency_key_ttl_seconds: int = Field(86400, ge=60)
    broker_timeout_seconds: float = Field(1.0, gt=0)
    ratelimit_generate_agentic: str = "10 per minute"
    ratelimit_generate_fullstack: str = "5 per minute"

    @model_validator(mode="after")
    def _production_requirements(self) -> Settings:
        if self.job_hard_time_limit_seconds <= self.job_soft_time_limit_seconds:
            raise ValueError("JOB_HARD_TIME_LIMIT_SECONDS must be greater than JOB_SOFT_TIME_LIMIT_SECONDS")
        if self.sandbox_backend == "none" and not self.sandbox_allow_unsandboxed:
            raise ValueError("SANDBOX_BACKEND=none runs generated code without a sandbox; it needs "
                             "SANDBOX_ALLOW_UNSANDBOXED=true, which only development and test accept")
        if self.devora_env != "production":
            return self
        if self.sandbox_allow_unsandboxed:
            raise ValueError("SANDBOX_ALLOW_UNSANDBOXED must be false in production: generated code only runs sandboxed")
        secret = self.secret_key.get_secret_value()
        if not secret or secret == DEFAULT_SECRET or len(secret) < 32:
            raise ValueError(
                "SECRET_KEY must be set to a random value of at least 32 characters in production"
            )
        if not self.redis_url:
            raise ValueError("REDIS_URL must be set in production")
        if self.database_url.startswith("sqlite"):
            raise ValueError("DATABASE_URL must point at PostgreSQL in production")
        for name in ("stripe_api_key", "stripe_webhook_secret"):
            if not getattr(self, name).get_secret_value():
                raise ValueError(f"{name.upper()} must be set in production")
        return self

    @cached_property
    def resolved_redis_url(self) -> str:
        """The Redis base URL (its DB and the next three are ours); the local default when unset."""
        return self.redis_url or DEFAULT_REDIS_URL

    @cached_property
    def resolved_broker_url(self) -> str:
        return self.broker_url or redis_db_url(self.resolved_redis_url, 0)

    @cached_property
    def resolved_cache_url(self) -> str:
        return self.cache_redis_url or redis_db_url(self.resolved_redis_url, 1)

    @cached_property
    def resolved_ratelimit_url(self) -> str:
        return self.ratelimit_storage_uri or redis_db_url(self.resolved_redis_url, 2)

    @cached_property
    def resolved_state_url(self) -> str:
        """Redis DB for our own short-lived state (dedup markers, idempotency)."""
        return redis_db_url(self.resolved_redis_url, 3)

    @property
    def broker_visibility_timeout(self) -> int:
        """Longer than any run plus any retry delay, so Redis never redelivers a live task."""
        return int(self.job_hard_time_limit_seconds + self.job_retry_backoff_max_seconds + 600)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)
