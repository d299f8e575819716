"""Settings: defaults, derived Redis URLs, `.env` and production fail-fast."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import DEFAULT_SECRET, Settings


def test_development_defaults_use_sqlite_under_instance():
    settings = Settings(_env_file=None)
    assert settings.devora_env == "development"
    assert settings.database_url.startswith("sqlite:///") and "/instance/" in settings.database_url


def test_separate_stores_default_to_distinct_databases_of_redis_url():
    settings = Settings(_env_file=None, redis_url="redis://cache.internal:6380/4")
    assert settings.resolved_broker_url == "redis://cache.internal:6380/4"
    assert settings.resolved_cache_url == "redis://cache.internal:6380/5"
    assert settings.resolved_ratelimit_url == "redis://cache.internal:6380/6"
    explicit = Settings(_env_file=None, redis_url="redis://r:6379/0", broker_url="amqp://guest:guest@mq:5672//")
    assert explicit.resolved_broker_url == "amqp://guest:guest@mq:5672//"


def test_dotenv_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("FRONTEND_URL=https://app.devora.example\nACCESS_TOKEN_TTL_SECONDS=600\n")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.frontend_url == "https://app.devora.example"
    assert settings.access_token_ttl_seconds == 600


PRODUCTION = dict(_env_file=None, devora_env="production", secret_key="s" * 40,
                  redis_url="redis://redis:6379/0", database_url="postgresql://db/devora",
                  stripe_api_key="sk_live_x", stripe_webhook_secret="whsec_x")


def test_production_accepts_a_complete_configuration():
    assert Settings(**PRODUCTION).devora_env == "production"


@pytest.mark.parametrize(("override", "variable"), [
    ({"secret_key": DEFAULT_SECRET}, "SECRET_KEY"),
    ({"secret_key": "short"}, "SECRET_KEY"),
    ({"redis_url": None}, "REDIS_URL"),
    ({"database_url": "sqlite:///x.db"}, "DATABASE_URL"),
    ({"stripe_api_key": ""}, "STRIPE_API_KEY"),
    ({"stripe_webhook_secret": ""}, "STRIPE_WEBHOOK_SECRET"),
])
def test_production_refuses_to_start_naming_the_variable(override, variable):
    with pytest.raises(ValidationError) as error:
        Settings(**{**PRODUCTION, **override})
    assert variable in str(error.value)


def test_production_reads_the_environment(monkeypatch):
    monkeypatch.setenv("DEVORA_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None)


def test_env_example_documents_every_setting():
    from shared.settings import PROJECT_ROOT

    documented = (PROJECT_ROOT / ".env.example").read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in documented]
    assert not missing, f"not in .env.example: {missing}"


def test_the_llm_provider_needs_a_base_url_and_a_model():
    with pytest.raises(ValidationError, match="LLM_BASE_URL must be set when GENERATION_PROVIDER=llm"):
        Settings(_env_file=None, generation_provider="llm", llm_model="m")
    with pytest.raises(ValidationError, match="LLM_MODEL must be set"):
        Settings(_env_file=None, generation_provider="llm", llm_base_url="http://127.0.0.1:11434/v1")
    with pytest.raises(ValidationError, match="LLM_BASE_URL must be an http"):
        Settings(_env_file=None, generation_provider="llm", llm_base_url="127.0.0.1:11434", llm_model="m")
    local = Settings(_env_file=None, generation_provider="llm", llm_base_url="http://127.0.0.1:11434/v1",
                     llm_model="qwen2.5-coder")
    assert local.llm_api_key.get_secret_value() == "" and not local.generation_needs_spec
    assert Settings(_env_file=None).generation_needs_spec


def test_the_llm_key_is_a_secret_and_extra_body_is_json(monkeypatch):
    monkeypatch.setenv("LLM_API_KEY", "sk-secret-value-123")
    monkeypatch.setenv("LLM_EXTRA_BODY", '{"options": {"num_ctx": 32768}}')
    settings = Settings(_env_file=None)
    assert "sk-secret-value-123" not in repr(settings) and "sk-secret-value-123" not in str(settings.model_dump())
    assert settings.llm_extra_body == {"options": {"num_ctx": 32768}}


def test_production_refuses_to_run_generated_code_unsandboxed():
    with pytest.raises(ValidationError, match="SANDBOX_ALLOW_UNSANDBOXED must be false in production"):
        Settings(**PRODUCTION, sandbox_allow_unsandboxed=True)
    with pytest.raises(ValidationError, match="SANDBOX_BACKEND=none"):
        Settings(**PRODUCTION, sandbox_backend="none")
    assert Settings(**PRODUCTION).sandbox_backend == "bwrap"


def test_no_sandbox_backend_needs_the_explicit_escape_hatch():
    with pytest.raises(ValidationError, match="SANDBOX_BACKEND=none .* needs SANDBOX_ALLOW_UNSANDBOXED=true"):
        Settings(_env_file=None, sandbox_backend="none")
    allowed = Settings(_env_file=None, sandbox_backend="none", sandbox_allow_unsandboxed=True)
    assert allowed.devora_env == "development" and allowed.sandbox_allow_unsandboxed
