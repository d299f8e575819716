"""Without STRIPE_API_KEY (allowed outside production) billing is off: refused at once, nothing sent anywhere."""
from __future__ import annotations

import logging

import pytest

from shared.jobs.kinds import TaskName
from shared.models import Job, WebhookEvent
from tests.peers.stripe_events import event, invoice, post_webhook
from worker.app import create_celery


@pytest.fixture
def settings_overrides(stripe_stub) -> dict:
    # A peer that would record any request: billing must not send one.
    return {"stripe_api_key": "", "stripe_api_base": stripe_stub.url}


@pytest.mark.parametrize(("path", "body"), [("/api/v2/billing/checkout", {"plan": "pro"}),
                                            ("/api/v2/billing/portal", None),
                                            ("/api/v2/billing/sync", None)])
def test_billing_operations_answer_503_saying_billing_is_not_configured(client, auth_headers, stripe_stub, db,
                                                                       path, body):
    response = client.post(path, json=body, headers=auth_headers)
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["title"] == "Billing not configured" and "STRIPE_API_KEY" in problem["detail"]
    assert stripe_stub.requests == []
    with db.transaction() as session:
        assert session.query(Job).count() == 0, "no job that could only fail"


def test_local_billing_reads_still_answer(client, auth_headers):
    assert client.get("/api/v2/billing/plans").status_code == 200
    assert client.get("/api/v2/billing/usage", headers=auth_headers).status_code == 200
    assert client.get("/api/v2/billing/subscription", headers=auth_headers).get_json()["plan"] == "free"


def test_readyz_reports_billing_disabled_and_stays_ready(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["billing"].startswith("disabled")


def test_stripe_sweeps_do_nothing_and_say_so_once(settings, stripe_stub, caplog):
    celery_app = create_celery(settings)
    celery_app.loader.import_default_modules()
    caplog.set_level(logging.INFO)
    assert celery_app.tasks[TaskName.BILLING_RECONCILE].apply().get() == 0
    assert celery_app.tasks[TaskName.WEBHOOKS_SWEEP_MISSED].apply().get() == 0
    said = [r.getMessage() for r in caplog.records if "billing is not configured" in r.getMessage()]
    assert len(said) == 2 and all(r.levelno < logging.WARNING for r in caplog.records
                                  if "billing is not configured" in r.getMessage())
    assert stripe_stub.requests == []


@pytest.mark.parametrize("settings_overrides", [{"stripe_webhook_secret": ""},
                                                {"stripe_webhook_secret": "", "stripe_api_key": ""}],
                         ids=["no webhook secret", "no Stripe at all"])
def test_a_webhook_without_a_webhook_secret_is_a_503_saying_so_and_nothing_is_stored(client, db,
                                                                                    settings_overrides):
    payload = event("invoice.paid", invoice("in_unconfigured", "cus_x"))
    response = post_webhook(client, payload)
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["title"] == "Billing not configured" and problem["type"].endswith("/billing-not-configured")
    assert "webhooks" in problem["detail"] and "STRIPE_WEBHOOK_SECRET" in problem["detail"]
    with db.transaction() as session:
        assert session.query(WebhookEvent).count() == 0
