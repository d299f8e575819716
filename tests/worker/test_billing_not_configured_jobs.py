"""A billing job queued while billing was on, run after it was turned off: failed, said once, nothing sent."""
from __future__ import annotations

import logging

import pytest

from shared.jobs import submission
from shared.jobs.outbox import JOBS
from tests.jobs_helpers import wait_for_job


@pytest.fixture
def settings_overrides(stripe_stub) -> dict:
    # A peer that would record any request: the job must not send one.
    return {"stripe_api_key": "", "stripe_api_base": stripe_stub.url}


def test_a_queued_sync_ends_failed_saying_billing_is_not_configured_in_one_log_line(
        client, db, settings, make_user, celery_app, worker, stripe_stub, caplog):
    caplog.set_level(logging.DEBUG)
    user, headers = make_user()
    with db.transaction() as session:  # recorded as the API did before billing was turned off
        dispatch = JOBS.dispatch(submission.submit_billing_sync(session, settings, user.id))
    JOBS.hand_over(celery_app, db, dispatch)
    job_id = str(dispatch.row_id)

    job = wait_for_job(client, headers, job_id)
    assert job["status"] == "failed" and job["attempts"] == 1 and job["next_retry_at"] is None
    assert job["error"]["type"] == "BillingNotConfigured"
    assert job["error"]["message"] == "billing is not configured on this server (STRIPE_API_KEY is not set)"
    # Ours, not Celery's own received/succeeded lines for every task.
    said = [record for record in caplog.records
            if not record.name.startswith("celery") and job_id in record.getMessage()]
    assert [record.getMessage() for record in said] == [
        f"job {job_id} not run: billing is not configured on this server (STRIPE_API_KEY is not set)"]
    assert said[0].levelno < logging.WARNING, "billing left off is a setting, not a fault"
    assert stripe_stub.requests == []
