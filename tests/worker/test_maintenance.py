"""Scheduled housekeeping tasks against the real database."""
from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select, update

from shared.models import IdempotencyKey, Job
from shared.models.base import utcnow
from tests.jobs_helpers import new_project, submit


def _job(db, job_id) -> Job:
    with db.transaction() as session:
        return session.get(Job, uuid.UUID(job_id))


def run(celery_app, name):
    return celery_app.tasks[name].apply().get()


def test_reaper_requeues_a_job_whose_worker_vanished_and_fails_one_past_the_hard_limit(
        client, auth_headers, db, celery_app, settings):
    project_id = new_project(client, auth_headers)
    lost = submit(client, auth_headers, project_id).get_json()["id"]
    overdue = submit(client, auth_headers, project_id, **{"Idempotency-Key": "b"}).get_json()["id"]
    healthy = submit(client, auth_headers, project_id, **{"Idempotency-Key": "c"}).get_json()["id"]
    now = utcnow()
    with db.transaction() as session:
        expired = now - timedelta(seconds=60)
        session.execute(update(Job).where(Job.id == uuid.UUID(lost))
                        .values(status="running", lease_expires_at=expired, started_at=now - timedelta(seconds=70)))
        session.execute(update(Job).where(Job.id == uuid.UUID(overdue))
                        .values(status="running", lease_expires_at=expired, started_at=now - timedelta(hours=1)))
        session.execute(update(Job).where(Job.id == uuid.UUID(healthy))
                        .values(status="running", lease_expires_at=now + timedelta(seconds=30), started_at=now))

    assert run(celery_app, "maintenance.reap_stuck_jobs") == {"requeued": 1, "failed": 1}
    assert _job(db, lost).status == "queued" and _job(db, lost).sent_at is None
    assert _job(db, overdue).status == "failed" and _job(db, overdue).error_type == "TimeLimitExceeded"
    assert _job(db, healthy).status == "running"


def test_reaper_requeues_a_retry_whose_message_never_came(client, auth_headers, db, celery_app):
    job_id = submit(client, auth_headers, new_project(client, auth_headers)).get_json()["id"]
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id))
                        .values(status="retrying", next_retry_at=utcnow() - timedelta(minutes=5)))
    assert run(celery_app, "maintenance.reap_stuck_jobs") == {"requeued": 1, "failed": 0}
    assert _job(db, job_id).status == "queued"


def test_expired_idempotency_keys_are_purged(client, auth_headers, db, celery_app):
    project_id = new_project(client, auth_headers)
    submit(client, auth_headers, project_id, **{"Idempotency-Key": "old"})
    submit(client, auth_headers, project_id, **{"Idempotency-Key": "fresh"})
    with db.transaction() as session:
        session.execute(update(IdempotencyKey).where(IdempotencyKey.key == "old").values(expires_at=utcnow()))
    assert run(celery_app, "maintenance.purge_idempotency_keys") == 1
    with db.transaction() as session:
        assert session.scalars(select(IdempotencyKey.key)).all() == ["fresh"]
        assert session.scalar(select(func.count()).select_from(Job)) == 2, "the jobs themselves stay"


def test_reconcile_queues_one_sync_per_subscribed_customer(celery_app, db, make_user):
    from shared import billing

    subscribed, _ = make_user()
    make_user()
    with db.transaction() as session:
        account = billing.account_for(session, subscribed.id)
        account.stripe_customer_id, account.subscription_id, account.subscription_status = "cus_r", "sub_r", "active"
    assert run(celery_app, "billing.reconcile") == 1
    assert run(celery_app, "billing.reconcile") == 0, "not while one is in flight"
    with db.transaction() as session:
        job = session.scalars(select(Job)).one()
        assert (job.owner_id, job.kind, job.task_name) == (subscribed.id, "billing_sync", "billing.sync_customer")
        assert job.sent_at is not None


def test_expired_oauth_states_and_codes_are_purged(celery_app, db):
    from shared.models import OAuthTicket
    from shared.oauth_login import put_ticket

    with db.transaction() as session:
        put_ticket(session, "old-state", "state", "{}", 60)
        put_ticket(session, "live-state", "state", "{}", 600)
        session.execute(update(OAuthTicket).where(OAuthTicket.key == "old-state")
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert run(celery_app, "maintenance.purge_expired_oauth_states") == 1
    with db.transaction() as session:
        assert session.scalars(select(OAuthTicket.key)).all() == ["live-state"]


def test_the_webhook_sweep_resends_events_whose_message_was_lost(client, celery_app, db):
    from shared.models import WebhookEvent
    from tests.peers.stripe_events import event, invoice, post_webhook

    for invoice_id in ("in_lost", "in_fresh"):
        post_webhook(client, event("invoice.paid", invoice(invoice_id, "cus_nobody")))
    with db.transaction() as session:
        lost = session.scalars(select(WebhookEvent).where(WebhookEvent.payload.contains("in_lost"))).one()
        lost.sent_at = utcnow() - timedelta(minutes=11)
    assert run(celery_app, "webhooks.enqueue_unprocessed") == 1, "only the one sent long ago and never processed"


def test_reaper_returns_a_long_unreceived_job_to_the_outbox(client, auth_headers, db, celery_app, settings):
    job_id = submit(client, auth_headers, new_project(client, auth_headers)).get_json()["id"]
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id))
                        .values(sent_at=utcnow() - timedelta(seconds=settings.broker_visibility_timeout + 60)))
    assert run(celery_app, "maintenance.reap_stuck_jobs") == {"requeued": 1, "failed": 0}
    assert _job(db, job_id).sent_at is None and _job(db, job_id).status == "queued"
