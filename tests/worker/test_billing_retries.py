"""billing.sync_customer against the Stripe stub: transient errors retried with backoff, permanent ones not."""
from __future__ import annotations

import pytest

from tests.jobs_helpers import wait_for_job


@pytest.fixture
def settings_overrides(stripe_stub):
    # The SDK's own retries are off so every Stripe failure reaches the task's backoff.
    return {"stripe_api_base": stripe_stub.url, "stripe_max_network_retries": 0, "job_max_attempts": 3,
            "job_retry_backoff_seconds": 0.3}


def test_rate_limited_create_is_retried_with_backoff_and_the_same_idempotency_key(
        client, auth_headers, worker, stripe_stub):
    stripe_stub.fail_next("/v1/customers", [429])
    job = client.post("/api/v2/billing/sync", headers=auth_headers).get_json()
    finished = wait_for_job(client, auth_headers, job["id"])
    assert finished["status"] == "succeeded", finished
    assert finished["attempts"] == 2
    creates = stripe_stub.requests_to("/v1/customers", "POST")
    assert len(creates) == 2
    assert creates[0].idempotency_key == creates[1].idempotency_key
    assert creates[0].idempotency_key.startswith("devora-customer-")
    assert finished["result"]["customer"].startswith("cus_")


def test_repeated_server_errors_fail_the_job_after_the_last_attempt(client, auth_headers, worker, stripe_stub):
    stripe_stub.fail_next("/v1/customers", [500, 502, 503])
    job = client.post("/api/v2/billing/sync", headers=auth_headers).get_json()
    finished = wait_for_job(client, auth_headers, job["id"])
    assert finished["status"] == "failed" and finished["attempts"] == 3
    assert finished["error"]["type"] == "StripeTransient"
    assert "sk_test" not in finished["error"]["message"]
    assert len(stripe_stub.requests_to("/v1/customers", "POST")) == 3


def test_a_permanent_error_fails_at_once_without_retry(client, auth_headers, worker, stripe_stub):
    stripe_stub.fail_next("/v1/customers", [401])
    job = client.post("/api/v2/billing/sync", headers=auth_headers).get_json()
    finished = wait_for_job(client, auth_headers, job["id"])
    assert finished["status"] == "failed" and finished["attempts"] == 1
    assert finished["error"]["type"] == "StripePermanent"
    assert len(stripe_stub.requests_to("/v1/customers", "POST")) == 1
