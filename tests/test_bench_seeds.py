"""The benchmarks' seeds against the code as it is now: the users, tokens and rows each bench
creates before it starts its servers must still be what the API accepts. The benchmarks run
outside the suite and for minutes; a bench broken by a change elsewhere shows here at once."""
from __future__ import annotations

import secrets

import pytest

from bench import jobs, streams, web, webhooks
from shared.db import Database
from shared.models import BillingAccount
from shared.settings import Settings
from web import create_app


@pytest.fixture
def database_url(tmp_path, monkeypatch) -> str:
    # The seeds point DATABASE_URL at their database, as the bench processes need; put it back after.
    monkeypatch.setenv("DATABASE_URL", "sqlite:///unused.db")
    return f"sqlite:///{tmp_path}/bench.db"


def client_for(settings: Settings):
    return create_app(settings).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_web_bench_user_has_its_hundred_projects(database_url, redis_url):
    token = web.seed(database_url, redis_url)
    client = client_for(Settings(database_url=database_url, redis_url=redis_url, _env_file=None))

    assert client.get("/api/v2/auth/me", headers=bearer(token)).status_code == 200
    listed = client.get("/api/v2/projects", headers=bearer(token)).get_json()
    assert listed["total"] == web.PROJECTS


def test_the_jobs_bench_user_owns_the_project_it_submits_into(database_url, redis_url):
    settings = jobs.settings_for(database_url, redis_url, secrets.token_urlsafe(48))
    token, project_id = jobs.seed(settings)
    client = client_for(settings)

    # Read, not submitted: a job sent here would sit in the shared test broker for other tests' workers.
    assert client.get(f"/api/v2/projects/{project_id}", headers=bearer(token)).status_code == 200


def test_the_streams_bench_poller_reads_its_job_and_each_watcher_has_a_stream_token(database_url, redis_url):
    settings, access, poll_job_id, watchers = streams.seed(database_url, redis_url, 2)
    client = client_for(settings)

    assert client.get(f"/api/v2/jobs/{poll_job_id}", headers=bearer(access)).status_code == 200
    assert len(watchers) == 2 and all(token for _, _, token in watchers)


def test_the_webhooks_bench_customer_belongs_to_its_user(database_url, redis_url):
    settings = Settings(database_url=database_url, redis_url=redis_url, _env_file=None)
    webhooks.seed(settings)

    db = Database(settings)
    with db.transaction() as session:
        assert session.query(BillingAccount).filter_by(stripe_customer_id=webhooks.CUSTOMER).count() == 1
    db.engine.dispose()
