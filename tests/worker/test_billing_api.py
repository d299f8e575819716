"""Plans, checkout, portal, subscription, invoices and quotas over HTTP, with Stripe played by the stub."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select, update

from shared.models import BillingAccount, Invoice, WebhookEvent
from worker.context import database_of

from tests.jobs_helpers import new_project, submit
from tests.peers.stripe_events import deliver, invoice, subscription


@pytest.fixture
def settings_overrides(stripe_stub):
    stripe_stub.add_price("price_pro_monthly")
    stripe_stub.add_price("price_team_monthly")
    return {"stripe_api_base": stripe_stub.url, "plan_free_monthly_generations": 3, "plan_free_concurrent_jobs": 2,
            "plan_pro_monthly_generations": 100, "plan_pro_concurrent_jobs": 5}


def test_plans_are_listed_without_authentication(client):
    plans = {p["name"]: p for p in client.get("/api/v2/billing/plans").get_json()["items"]}
    assert set(plans) == {"free", "pro", "team"}
    assert plans["free"]["monthly_generations"] == 3 and plans["free"]["price_id"] is None
    assert plans["pro"]["price_id"] == "price_pro_monthly"


def test_checkout_creates_the_customer_once_and_returns_the_session_url(client, auth_headers, stripe_stub, make_user):
    first = client.post("/api/v2/billing/checkout", json={"plan": "pro"}, headers=auth_headers)
    assert first.status_code == 200 and first.get_json()["url"].startswith("http")
    second = client.post("/api/v2/billing/checkout", json={"plan": "team"}, headers=auth_headers)
    assert second.status_code == 200
    customers = stripe_stub.requests_to("/v1/customers", "POST")
    assert len(customers) == 1, "the customer is created once and remembered"
    assert customers[0].idempotency_key.startswith("devora-customer-")
    sessions = stripe_stub.requests_to("/v1/checkout/sessions", "POST")
    assert [s.form["mode"] for s in sessions] == ["subscription", "subscription"]
    assert sessions[0].form["line_items[0][price]"] == "price_pro_monthly"
    assert sessions[0].idempotency_key != sessions[1].idempotency_key


def test_checkout_for_the_free_plan_is_422(client, auth_headers):
    assert client.post("/api/v2/billing/checkout", json={"plan": "free"}, headers=auth_headers).status_code == 422


def test_portal_needs_a_customer_first(client, auth_headers):
    assert client.post("/api/v2/billing/portal", headers=auth_headers).status_code == 409
    client.post("/api/v2/billing/checkout", json={"plan": "pro"}, headers=auth_headers)
    portal = client.post("/api/v2/billing/portal", headers=auth_headers)
    assert portal.status_code == 200 and portal.get_json()["url"]


def test_stripe_trouble_is_503_when_transient_and_502_when_refused(client, auth_headers, stripe_stub):
    stripe_stub.fail_next("/v1/customers", [503])
    unavailable = client.post("/api/v2/billing/checkout", json={"plan": "pro"}, headers=auth_headers)
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"]
    assert unavailable.content_type == "application/problem+json"
    stripe_stub.fail_next("/v1/customers", [400])
    refused = client.post("/api/v2/billing/checkout", json={"plan": "pro"}, headers=auth_headers)
    assert refused.status_code == 502
    assert "sk_test" not in refused.get_data(as_text=True)


def test_subscription_defaults_to_free_and_inactive(client, auth_headers):
    body = client.get("/api/v2/billing/subscription", headers=auth_headers).get_json()
    assert body == {"plan": "free", "status": "inactive", "subscription_id": None, "current_period_end": None,
                    "cancel_at_period_end": False}


def test_billing_requires_authentication(client):
    for method, path in [("get", "/api/v2/billing/subscription"), ("get", "/api/v2/billing/invoices"),
                         ("get", "/api/v2/billing/usage"), ("post", "/api/v2/billing/sync"),
                         ("post", "/api/v2/billing/portal")]:
        assert getattr(client, method)(path).status_code == 401, path


def test_monthly_quota_gives_402_saying_which_limit_and_when_it_resets(client, auth_headers):
    project_id = new_project(client, auth_headers)
    for _ in range(3):
        job = submit(client, auth_headers, project_id).get_json()
        client.post(f"/api/v2/jobs/{job['id']}/cancel", headers=auth_headers)
    refused = submit(client, auth_headers, project_id)
    assert refused.status_code == 402 and refused.content_type == "application/problem+json"
    body = refused.get_json()
    assert body["limit"] == "monthly_generations" and body["allowed"] == 3 and body["used"] == 3
    assert body["resets_at"].endswith("T00:00:00+00:00") and "resets" in body["detail"]
    usage = client.get("/api/v2/billing/usage", headers=auth_headers).get_json()
    assert usage["plan"] == "free" and usage["generations"] == {"used": 3, "limit": 3}
    assert usage["resets_at"] == body["resets_at"].replace("+00:00", "Z")


def test_concurrent_job_limit_gives_402(client, auth_headers, settings_overrides):
    project_id = new_project(client, auth_headers)
    submit(client, auth_headers, project_id)
    submit(client, auth_headers, project_id, **{"Idempotency-Key": "two"})
    # Both still queued (no worker here): the free plan's 2 concurrent slots are taken.
    refused = submit(client, auth_headers, project_id, **{"Idempotency-Key": "three"})
    assert refused.status_code == 402 and refused.get_json()["limit"] == "concurrent_jobs"
    replay = submit(client, auth_headers, project_id, **{"Idempotency-Key": "two"})
    assert replay.status_code == 202, "a retried request is not charged again"


def test_invoice_list_is_cached_and_a_webhook_change_shows_at_once(client, auth_headers, celery_app, db):
    client.post("/api/v2/billing/checkout", json={"plan": "pro"}, headers=auth_headers)
    customer = _customer_of(db)
    deliver(client, "invoice.created", invoice("in_a", customer, status="open"))
    _process_stored(celery_app)
    first = client.get("/api/v2/billing/invoices", headers=auth_headers).get_json()["items"]
    assert [(i["id"], i["status"]) for i in first] == [("in_a", "open")]
    _sneak_invoice_status(db, "in_a", "sneaky")
    assert client.get("/api/v2/billing/invoices", headers=auth_headers).get_json()["items"][0]["status"] == "open", \
        "served from the cache"
    deliver(client, "invoice.paid", invoice("in_a", customer, status="paid"))
    _process_stored(celery_app)
    assert client.get("/api/v2/billing/invoices", headers=auth_headers).get_json()["items"][0]["status"] == "paid"


def test_an_upgrade_by_webhook_lifts_the_quota_for_the_next_submission(client, auth_headers, celery_app, db):
    project_id = new_project(client, auth_headers)
    for key in ("a", "b", "c"):
        job = submit(client, auth_headers, project_id, **{"Idempotency-Key": key}).get_json()
        client.post(f"/api/v2/jobs/{job['id']}/cancel", headers=auth_headers)
    assert submit(client, auth_headers, project_id).status_code == 402
    client.post("/api/v2/billing/checkout", json={"plan": "pro"}, headers=auth_headers)
    deliver(client, "customer.subscription.created",
            subscription("sub_up", _customer_of(db), "price_pro_monthly"))
    _process_stored(celery_app)
    assert client.get("/api/v2/billing/subscription", headers=auth_headers).get_json()["plan"] == "pro"
    assert submit(client, auth_headers, project_id).status_code == 202


def test_a_late_older_update_does_not_revive_a_deleted_subscription(client, auth_headers, celery_app, db):
    client.post("/api/v2/billing/checkout", json={"plan": "pro"}, headers=auth_headers)
    customer = _customer_of(db)
    now = int(time.time())
    deliver(client, "customer.subscription.created", subscription("sub_1", customer, "price_pro_monthly"),
            created=now - 60)
    deliver(client, "customer.subscription.deleted",
            subscription("sub_1", customer, "price_pro_monthly", status="canceled"), created=now - 10)
    deliver(client, "customer.subscription.updated",
            subscription("sub_1", customer, "price_pro_monthly", status="active"), created=now - 30)
    _process_stored(celery_app)
    body = client.get("/api/v2/billing/subscription", headers=auth_headers).get_json()
    assert body["status"] == "canceled" and body["plan"] == "free"


# Helpers that read or poke the database directly: test setup and observation, not the code under test.

def _customer_of(db) -> str:
    with db.transaction() as session:
        return session.scalar(select(BillingAccount.stripe_customer_id))


def _sneak_invoice_status(db, invoice_id, status):
    with db.transaction() as session:
        session.execute(update(Invoice).where(Invoice.id == invoice_id).values(status=status))


def _process_stored(celery_app):
    """Run the processing task for every stored event, in arrival order, as a worker would."""
    with database_of(celery_app).transaction() as session:
        ids = session.scalars(select(WebhookEvent.id).where(WebhookEvent.status == "received")
                              .order_by(WebhookEvent.received_at)).all()
    for row_id in ids:
        celery_app.tasks["webhooks.process_stripe_event"].apply(args=[str(row_id)]).get()
