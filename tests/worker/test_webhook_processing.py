"""Webhook processing with a real worker: exactly once, the broker outage, retries, failure and replay."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from shared import billing
from shared.models import Invoice, WebhookEvent
from shared.settings import PROJECT_ROOT
from tests.peers.processes import wait_until
from tests.peers.stripe_events import WEBHOOK_PATH, event, invoice, post_webhook, subscription, webhook_headers

DEVORA = str(Path(sys.executable).parent / "devora")


def rows(db) -> list[WebhookEvent]:
    with db.transaction() as session:
        return list(session.scalars(select(WebhookEvent)))


def test_the_same_event_delivered_ten_times_at_once_is_processed_exactly_once(live_server, worker, db, make_user):
    user, _ = make_user()
    with db.transaction() as session:
        billing.account_for(session, user.id).stripe_customer_id = "cus_once"
    payload = event("invoice.paid", invoice("in_once", "cus_once"))
    headers = webhook_headers(payload)
    barrier = threading.Barrier(10)
    answers = []

    def deliver():
        barrier.wait()
        answers.append(requests.post(f"{live_server}{WEBHOOK_PATH}", data=payload, headers=headers, timeout=30))

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 10
    assert sum(not a.json()["duplicate"] for a in answers) == 1
    wait_until(lambda: rows(db)[0].status == "processed", "the event to be processed")
    time.sleep(0.5)
    [row] = rows(db)
    assert row.attempts == 1, "claimed and applied once"
    with db.transaction() as session:
        assert session.get(Invoice, "in_once").status == "paid"


@pytest.fixture
def settings_overrides(stripe_stub):
    return {"stripe_api_base": stripe_stub.url, "stripe_max_network_retries": 0, "webhook_max_attempts": 2,
            "job_retry_backoff_seconds": 0.2}


def test_transient_failures_retry_then_fail_visibly_and_replay_succeeds(
        client, worker, db, make_user, stripe_stub, settings):
    user, headers = make_user()
    stripe_stub.subscriptions["sub_ck"] = subscription("sub_ck", "cus_ck", "price_pro_monthly")
    stripe_stub.fail_next("/v1/subscriptions/sub_ck", [503, 503])
    payload = event("checkout.session.completed", {
        "id": "cs_1", "object": "checkout.session", "customer": "cus_ck", "subscription": "sub_ck",
        "client_reference_id": str(user.id), "mode": "subscription"})
    post_webhook(client, payload)
    wait_until(lambda: rows(db)[0].status == "failed", "the event to fail after its attempts")
    [row] = rows(db)
    assert row.attempts == 2 and row.error_type == "StripeTransient"
    assert client.get("/api/v2/billing/subscription", headers=headers).get_json()["plan"] == "free"

    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "DEVORA_ENV": "test"}
    replay = subprocess.run([DEVORA, "webhooks", "replay", json.loads(payload)["id"]], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode == 0, replay.stderr
    wait_until(lambda: rows(db)[0].status == "processed", "the replayed event to be processed")
    body = client.get("/api/v2/billing/subscription", headers=headers).get_json()
    assert body["plan"] == "pro" and body["status"] == "active"


def test_replaying_an_unknown_event_fails_clearly(settings):
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    result = subprocess.run([DEVORA, "webhooks", "replay", "evt_nope"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no stored webhook event 'evt_nope'" in result.stderr
