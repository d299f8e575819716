"""Billing against localstripe through the real SDK: signed webhooks in, the mirror filled, syncs."""
from __future__ import annotations

import time
import uuid

import pytest
import stripe
from sqlalchemy import func, select, update

from shared.models import Invoice, WebhookEvent
from tests.jobs_helpers import wait_for_job
from tests.peers.stripe_events import API_KEY, WEBHOOK_PATH, WEBHOOK_SECRET


@pytest.fixture
def pro_plan_id():
    return f"plan_pro_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings_overrides(localstripe, pro_plan_id):
    return {"stripe_api_base": localstripe.url, "plan_pro_price_id": pro_plan_id, "stripe_max_network_retries": 1,
            "stripe_timeout_seconds": 5}


@pytest.fixture
def sdk(localstripe):
    """The bare SDK, to do in localstripe what Stripe itself would do after a Checkout."""
    return stripe.StripeClient(API_KEY, base_addresses={"api": localstripe.url}, max_network_retries=0,
                               http_client=stripe.RequestsClient(timeout=5))


@pytest.fixture
def webhook_endpoint(localstripe, live_server):
    endpoint_id = f"devora-{uuid.uuid4().hex[:8]}"
    url = f"{live_server}{WEBHOOK_PATH}"
    localstripe.register_webhook(endpoint_id, url, WEBHOOK_SECRET)
    yield endpoint_id, url
    localstripe.mute_webhook(endpoint_id, url, WEBHOOK_SECRET)


def subscribe(sdk, customer_id: str, plan_id: str):
    card = sdk.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}})
    sdk.v1.payment_methods.attach(card.id, params={"customer": customer_id})
    sdk.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": card.id}})
    try:
        sdk.v1.plans.retrieve(plan_id)
    except stripe.InvalidRequestError:
        sdk.v1.plans.create(params={"id": plan_id, "amount": 1900, "currency": "usd", "interval": "month",
                                    "product": {"name": plan_id}})
    return sdk.v1.subscriptions.create(params={"customer": customer_id, "items": [{"plan": plan_id}]})


def eventually(check, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_subscription_made_in_stripe_arrives_by_signed_webhooks_and_activates_the_plan(
        client, auth_headers, worker, webhook_endpoint, sdk, pro_plan_id, db, localstripe):
    synced = client.post("/api/v2/billing/sync", headers=auth_headers)
    assert synced.status_code == 202
    job = wait_for_job(client, auth_headers, synced.get_json()["id"])
    assert job["status"] == "succeeded", job
    customer_id = job["result"]["customer"]
    assert sdk.v1.customers.retrieve(customer_id).metadata["user_id"]

    subscribe(sdk, customer_id, pro_plan_id)

    def active():
        body = client.get("/api/v2/billing/subscription", headers=auth_headers).get_json()
        return body if body["status"] == "active" else None

    body = eventually(active, what="the subscription to become active")
    assert body["plan"] == "pro" and body["current_period_end"]
    with db.transaction() as session:
        types = set(session.scalars(select(WebhookEvent.type).where(WebhookEvent.status == "processed")))
    assert "customer.subscription.created" in types

    invoices = eventually(lambda: client.get("/api/v2/billing/invoices", headers=auth_headers)
                          .get_json()["items"], what="the invoice mirror")
    assert invoices[0]["total"] == 1900 and invoices[0]["currency"] == "usd"
    usage = client.get("/api/v2/billing/usage", headers=auth_headers).get_json()
    assert usage["plan"] == "pro"

    # A repeated list comes from the cache: a change behind the API is not seen...
    eventually(lambda: _all_processed(db), what="every delivered event to be processed")
    listed = client.get("/api/v2/billing/invoices", headers=auth_headers).get_json()["items"]
    with db.transaction() as session:
        session.execute(update(Invoice).values(number="sneaky"))
    assert client.get("/api/v2/billing/invoices", headers=auth_headers).get_json()["items"] == listed

    # ...while a sync that finds a new invoice (made with webhooks muted) shows it at once.
    localstripe.mute_webhook(*webhook_endpoint, WEBHOOK_SECRET)
    subscribe(sdk, customer_id, pro_plan_id)
    job = wait_for_job(client, auth_headers, client.post("/api/v2/billing/sync", headers=auth_headers)
                       .get_json()["id"])
    assert job["status"] == "succeeded", job
    after = client.get("/api/v2/billing/invoices", headers=auth_headers).get_json()["items"]
    assert len(after) == len(listed) + 1


def _all_processed(db) -> bool:
    with db.transaction() as session:
        waiting = session.scalar(select(func.count()).select_from(WebhookEvent)
                                 .where(WebhookEvent.status.in_(("received", "processing", "retrying"))))
    return waiting == 0


def test_sweep_finds_events_that_never_arrived(client, auth_headers, worker, celery_app, sdk, db, pro_plan_id):
    customer = sdk.v1.customers.create(params={"email": "swept@example.com"})
    with db.transaction() as session:
        before = session.scalar(select(func.count()).select_from(WebhookEvent))
    swept = celery_app.tasks["webhooks.sweep_missed"].apply().get()
    assert swept >= 1
    with db.transaction() as session:
        ids = set(session.scalars(select(WebhookEvent.stripe_event_id)))
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == before + swept
    created = [e.id for e in sdk.v1.events.list(params={"type": "customer.created", "limit": 100}).data
               if e.data.object.id == customer.id]
    assert created and created[0] in ids
    assert celery_app.tasks["webhooks.sweep_missed"].apply().get() == 0, "a second sweep finds nothing new"
