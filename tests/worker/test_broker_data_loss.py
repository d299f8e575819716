"""The broker's Redis restarts empty: what it held is sent again by the next sweep, not after the
visibility timeout, and nothing runs twice."""
from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import select

from shared import billing
from shared.jobs.kinds import TaskName
from shared.models import Invoice, Job, WebhookEvent
from shared.taskqueue import QUEUES
from tests.conftest import make_settings, restart_valkey
from tests.jobs_helpers import new_project, submit, wait_for_job
from tests.peers.stripe_events import event, invoice, post_webhook
from worker.app import create_celery


@pytest.fixture
def settings(database_url, redis_url, doomed_redis):
    return make_settings(database_url, redis_url, broker_url=doomed_redis.connection_url + "/0")


def test_jobs_and_events_the_broker_forgot_are_sent_again_by_the_next_sweep(
        client, auth_headers, db, make_user, settings, doomed_redis):
    celery_app = create_celery(settings)
    celery_app.loader.import_default_modules()
    # A first sweep against this broker records its sentinel, as in any running deployment.
    celery_app.tasks[TaskName.MAINTENANCE_REQUEUE_UNSENT_JOBS].apply().get()

    user, _ = make_user()
    with db.transaction() as session:
        billing.account_for(session, user.id).stripe_customer_id = "cus_loss"
    project_id = new_project(client, auth_headers)
    job_ids = [submit(client, auth_headers, project_id, **{"Idempotency-Key": f"k{n}"}).get_json()["id"]
               for n in range(3)]
    payload = event("invoice.paid", invoice("in_loss", "cus_loss"))
    assert post_webhook(client, payload).status_code == 200
    with db.transaction() as session:
        assert all(job.sent_at is not None for job in session.scalars(select(Job))), "the broker had them"

    # The broker restarts without its data: every message above is gone.
    port = doomed_redis.port
    doomed_redis.stop()
    revived = restart_valkey(port)
    try:
        with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False,
                          loglevel="WARNING", queues=list(QUEUES), shutdown_timeout=30):
            # What beat does every 15 s; the webhook sweep runs on the same beat.
            celery_app.send_task(TaskName.MAINTENANCE_REQUEUE_UNSENT_JOBS)
            celery_app.send_task(TaskName.WEBHOOKS_ENQUEUE_UNPROCESSED)
            finished = [wait_for_job(client, auth_headers, job_id, timeout=60) for job_id in job_ids]
            deadline = time.monotonic() + 30
            while True:
                with db.transaction() as session:
                    row = session.scalars(select(WebhookEvent)).one()
                if row.status == "processed" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            # Another sweep finds the sentinel in place and resends nothing.
            assert celery_app.tasks[TaskName.MAINTENANCE_REQUEUE_UNSENT_JOBS].apply().get() == 0
    finally:
        revived.stop()
    assert [job["status"] for job in finished] == ["succeeded"] * 3
    assert all(job["attempts"] == 1 for job in finished), "each ran once"
    assert row.status == "processed" and row.attempts == 1
    with db.transaction() as session:
        assert session.get(Invoice, "in_loss").status == "paid"
