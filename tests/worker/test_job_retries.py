"""Transient failures: retried with exponential backoff, then failed clearly after the last attempt."""
from __future__ import annotations

import uuid

import pytest

from shared.generator import PROVIDERS, EmbeddedProvider, ProviderUnavailable
from shared.models import Job
from tests.jobs_helpers import new_project, submit, wait_for_job


class FlakyProvider(EmbeddedProvider):
    """A provider whose backend is unavailable for its first `failures` plans."""

    name = "flaky"
    failures = 2
    calls = 0

    def plan(self, request, run):
        type(self).calls += 1
        if type(self).calls <= type(self).failures:
            raise ProviderUnavailable(f"provider timed out (call {type(self).calls})")
        return super().plan(request, run)


@pytest.fixture
def flaky(monkeypatch):
    FlakyProvider.calls, FlakyProvider.failures = 0, 2
    monkeypatch.setitem(PROVIDERS, "flaky", FlakyProvider)
    return FlakyProvider


@pytest.fixture
def settings_overrides():
    return {"generation_provider": "flaky", "job_max_attempts": 3, "job_retry_backoff_seconds": 0.5}


def test_transient_failures_are_retried_with_backoff_then_succeed(client, auth_headers, worker, flaky, db):
    project_id = new_project(client, auth_headers)
    job = submit(client, auth_headers, project_id).get_json()
    retrying = wait_for_job(client, auth_headers, job["id"], statuses=("retrying", "succeeded"))
    assert retrying["status"] == "retrying", "the first attempt fails and waits"
    assert retrying["next_retry_at"] and retrying["error"]["type"] == "ProviderUnavailable"
    finished = wait_for_job(client, auth_headers, job["id"])
    assert finished["status"] == "succeeded" and finished["attempts"] == 3 and finished["error"] is None
    # The waits grow: 0.5 s then 1 s nominal (+/-25 % jitter).
    with db.transaction() as session:
        record = session.get(Job, uuid.UUID(finished["id"]))
        elapsed = (record.finished_at - record.created_at).total_seconds()
    assert elapsed >= 0.5 * 0.75 + 1.0 * 0.75


def test_the_last_transient_failure_fails_the_job_clearly(client, auth_headers, worker, flaky):
    flaky.failures = 99
    project_id = new_project(client, auth_headers)
    job = submit(client, auth_headers, project_id).get_json()
    finished = wait_for_job(client, auth_headers, job["id"])
    assert finished["status"] == "failed" and finished["attempts"] == 3
    assert finished["error"] == {"type": "ProviderUnavailable", "message": "provider timed out (call 3)", "details": None}
    assert client.get(f"/api/v2/projects/{project_id}/files", headers=auth_headers).get_json()["items"] == []
