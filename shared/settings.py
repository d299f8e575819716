"""Typed settings read once from the environment and `.env`."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECRET = "dev-insecure-secret-change-me"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def origin_of(url: str) -> str:
    """The origin (scheme://host[:port]) of a URL, as a browser sends it in an Origin header."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}"


def _is_origin(value: str) -> bool:
    parts = urlsplit(value)
    return value == "*" or (parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.path
                            and not parts.query and not parts.fragment)


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
    # Two tabs refreshing with one token this close together get the same new pair; a later
    # reuse of a rotated token revokes the whole login.
    refresh_reuse_grace_seconds: float = Field(10, ge=0, le=60)

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
    # quota, concurrent-job limit and monthly model-token budget.
    plan_pro_price_id: str = "price_pro_monthly"
    plan_team_price_id: str = "price_team_monthly"
    plan_free_monthly_generations: int = Field(20, ge=0)
    plan_free_concurrent_jobs: int = Field(1, ge=1)
    plan_pro_monthly_generations: int = Field(500, ge=0)
    plan_pro_concurrent_jobs: int = Field(3, ge=1)
    plan_team_monthly_generations: int = Field(5000, ge=0)
    plan_team_concurrent_jobs: int = Field(10, ge=1)
    # Model tokens (prompt plus completion) each plan's users may spend a calendar month.
    plan_free_monthly_tokens: int = Field(1_000_000, ge=0)
    plan_pro_monthly_tokens: int = Field(25_000_000, ge=0)
    plan_team_monthly_tokens: int = Field(250_000_000, ge=0)

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
    # Browser origins allowed to call the API and the event stream, comma-separated; unset:
    # FRONTEND_URL's origin.
    cors_origins: str | None = None
    cors_max_age_seconds: int = Field(600, ge=0, le=86400)
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
    # `embedded` (templates, no network) or `llm` (an OpenAI-compatible model, the LLM_* settings).
    generation_provider: str = "embedded"
    # The model server: its OpenAI-compatible base URL (with /v1), key (optional for local
    # servers) and model name.
    llm_base_url: str | None = None
    llm_api_key: SecretStr = SecretStr("")
    llm_model: str | None = None
    # Longest silence from the server (connecting, before the first chunk, between chunks).
    llm_timeout_seconds: float = Field(120.0, gt=0, le=3600)
    llm_max_output_tokens: int = Field(16384, ge=256, le=1_000_000)
    # Some models accept only max_completion_tokens (OpenAI's reasoning models), others only max_tokens.
    llm_token_limit_parameter: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # Unset: the server's default (some models refuse any other value).
    llm_temperature: float | None = Field(None, ge=0, le=2)
    # A JSON object merged into every request body, for server-specific options.
    llm_extra_body: dict[str, Any] = Field(default_factory=dict)
    # Prompt plus completion tokens one job may use, over all its model calls and attempts.
    llm_max_job_tokens: int = Field(300_000, ge=1000)
    # Longest Retry-After (seconds) honoured from a rate-limited server.
    llm_retry_after_cap_seconds: float = Field(60.0, ge=0, le=3600)
    # How the plan's JSON is asked for; auto tries json_schema, then json_object, then none.
    llm_structured_output: Literal["auto", "json_schema", "json_object", "none"] = "auto"
    # Answers the model may give for a plan (the invalid ones go back with their errors).
    llm_max_plan_attempts: int = Field(3, ge=1, le=10)
    # Shortest interval between progress reports while the model writes.
    llm_progress_interval_seconds: float = Field(1.0, gt=0, le=60)
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
    # A message sent this long ago whose job or event nobody picked up is taken as lost (a worker
    # killed with it, a broker failover) and sent again; a second delivery is a no-op, as every
    # delivery claims its row first.
    outbox_resend_after_seconds: float = Field(120.0, ge=10)
    idempotency_key_ttl_seconds: int = Field(86400, ge=60)
    broker_timeout_seconds: float = Field(1.0, gt=0)
    ratelimit_generate_agentic: str = "10 per minute"
    ratelimit_generate_fullstack: str = "5 per minute"

    # Live job events: the stream process (`devora stream`) and the per-user event log.
    events_port: int = 8001
    # Where clients open the stream; unset: /api/v2/events on the API's own origin.
    events_public_url: str | None = None
    # Unset: the state Redis (resolved_state_url), which is never evicted.
    events_redis_url: str | None = None
    # Each user's log keeps about this many events, for this long after the last one.
    events_max_length: int = Field(500, ge=10)
    events_retention_seconds: int = Field(1800, ge=60)
    events_heartbeat_seconds: float = Field(15.0, gt=0, le=15)
    events_retry_ms: int = Field(3000, ge=100, le=60000)
    events_token_ttl_seconds: int = Field(300, ge=1, le=3600)
    events_max_streams_per_user: int = Field(10, ge=1)
    events_max_streams_per_process: int = Field(1000, ge=1)
    # An open stream ends after this long; the client reconnects with a fresh credential.
    events_stream_max_seconds: int = Field(3600, ge=1)

    @model_validator(mode="after")
    def _production_requirements(self) -> Settings:
        if self.job_hard_time_limit_seconds <= self.job_soft_time_limit_seconds:
            raise ValueError("JOB_HARD_TIME_LIMIT_SECONDS must be greater than JOB_SOFT_TIME_LIMIT_SECONDS")
        self._check_origins()
        if self.generation_provider == "llm":
            for name in ("llm_base_url", "llm_model"):
                if not getattr(self, name):
                    raise ValueError(f"{name.upper()} must be set when GENERATION_PROVIDER=llm")
            if urlsplit(self.llm_base_url or "").scheme not in ("http", "https"):
                raise ValueError("LLM_BASE_URL must be an http:// or https:// URL")
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

    def _check_origins(self) -> None:
        source = "CORS_ORIGINS" if self.cors_origins is not None else "FRONTEND_URL"
        for origin in self.allowed_origins:
            if not _is_origin(origin):
                raise ValueError(f"{source} gives {origin!r}, which is not an origin: use scheme://host[:port] "
                                 "without a path (or * in CORS_ORIGINS)")

    @cached_property
    def allowed_origins(self) -> list[str]:
        """The CORS origins: CORS_ORIGINS when set, else the origin of FRONTEND_URL."""
        if self.cors_origins is None:
            return [origin_of(self.frontend_url)]
        return [part.strip().rstrip("/") for part in self.cors_origins.split(",") if part.strip()]

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

    @cached_property
    def resolved_events_url(self) -> str:
        """Redis holding the per-user job event logs."""
        return self.events_redis_url or self.resolved_state_url

    @property
    def broker_visibility_timeout(self) -> int:
        """Longer than any run plus any retry delay, so Redis never redelivers a live task."""
        return int(self.job_hard_time_limit_seconds + self.job_retry_backoff_max_seconds + 600)

    @property
    def generation_needs_spec(self) -> bool:
        """Whether generation requests must carry a spec: only the llm provider plans from a prompt alone."""
        return self.generation_provider != "llm"

    @property
    def billing_enabled(self) -> bool:
        """Stripe is configured; outside production billing may be left off for development."""
        return bool(self.stripe_api_key.get_secret_value())

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)

