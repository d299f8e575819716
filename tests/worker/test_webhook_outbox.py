"""Broker down while a webhook arrives: 200, stored, and processed once the broker is back."""
from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import select

from shared import billing
from shared.models import Invoice, WebhookEvent
from shared.taskqueue import QUEUES
from tests.conftest import make_settings, restart_valkey
from tests.peers.stripe_events import event, invoice, post_webhook
from worker.app import create_celery


@pytest.fixture
def settings(database_url, redis_url, doomed_redis):
    return make_settings(database_url, redis_url, broker_url=doomed_redis.connection_url + "/0")


def test_webhook_during_a_broker_outage_is_stored_and_processed_later(client, db, make_user, settings, doomed_redis):
    user, _ = make_user()
    with db.transaction() as session:
        billing.account_for(session, user.id).stripe_customer_id = "cus_outage"
    port = doomed_redis.port
    doomed_redis.stop()
    payload = event("invoice.paid", invoice("in_outage", "cus_outage"))
    response = post_webhook(client, payload)
    assert response.status_code == 200 and response.get_json() == {"received": True, "duplicate": False}
    with db.transaction() as session:
        row = session.scalars(select(WebhookEvent)).one()
        assert row.status == "received" and row.sent_at is None

    revived = restart_valkey(port)
    try:
        celery_app = create_celery(settings)
        celery_app.loader.import_default_modules()
        with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING",
                          queues=list(QUEUES), shutdown_timeout=30):
            celery_app.send_task("webhooks.enqueue_unprocessed")
            deadline = time.monotonic() + 30
            while True:
                with db.transaction() as session:
                    row = session.scalars(select(WebhookEvent)).one()
                if row.status == "processed":
                    break
                assert time.monotonic() < deadline, row.status
                time.sleep(0.1)
        assert row.attempts == 1 and row.sent_at is not None
        with db.transaction() as session:
            assert session.get(Invoice, "in_outage").status == "paid"
    finally:
        revived.stop()
