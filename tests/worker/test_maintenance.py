"""Scheduled housekeeping tasks against the real database."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from shared.events import EventStore
from shared.models import IdempotencyKey, Job
from shared.models.base import utcnow
from tests.events_helpers import EventStream, StreamProcess
from tests.jobs_helpers import new_project, submit


def _job(db, job_id) -> Job:
    with db.transaction() as session:
        return session.get(Job, uuid.UUID(job_id))


def run(celery_app, name):
    return celery_app.tasks[name].apply().get()


def events_after(store: EventStore, owner_id, after: str) -> list[tuple[str, str, dict]]:
    """(job id, type, payload) of each event the owner's watchers were sent after `after`."""
    return [(event.job_id, event.type, event.payload) for event in store.read_after(owner_id, after)]


def last_event_id(store: EventStore, owner_id) -> str:
    published = store.read_after(owner_id, count=10_000)
    return published[-1].id if published else "0-0"


@pytest.fixture
def store(settings):
    """The event store the workers publish to, on the test's Redis."""
    events = EventStore.from_settings(settings)
    yield events
    events.redis.close()


def test_reaper_requeues_a_job_whose_worker_vanished_and_fails_one_past_the_hard_limit(
        client, make_user, db, celery_app, settings, store):
    user, auth_headers = make_user()
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
    before = last_event_id(store, user.id)

    assert run(celery_app, "maintenance.reap_stuck_jobs") == {"requeued": 1, "failed": 1}
    assert _job(db, lost).status == "queued" and _job(db, lost).sent_at is None
    assert _job(db, overdue).status == "failed" and _job(db, overdue).error_type == "TimeLimitExceeded"
    assert _job(db, healthy).status == "running"
    announced = sorted(events_after(store, user.id, before))
    limit = int(settings.job_hard_time_limit_seconds)
    assert announced == sorted([
        (lost, "job.queued", {"kind": "fullstack"}),
        (overdue, "job.failed", {"error_type": "TimeLimitExceeded",
                                 "error_message": f"the job was still running after the {limit} s hard time limit"}),
    ]), "each job the reaper changed is announced once, the healthy one not at all"


def test_reaper_requeues_a_retry_whose_message_never_came(client, make_user, db, celery_app, store):
    user, auth_headers = make_user()
    job_id = submit(client, auth_headers, new_project(client, auth_headers)).get_json()["id"]
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id))
                        .values(status="retrying", next_retry_at=utcnow() - timedelta(minutes=5)))
    before = last_event_id(store, user.id)
    assert run(celery_app, "maintenance.reap_stuck_jobs") == {"requeued": 1, "failed": 0}
    assert _job(db, job_id).status == "queued"
    assert events_after(store, user.id, before) == [(job_id, "job.queued", {"kind": "fullstack"})]


def test_a_watcher_sees_the_reaper_fail_a_job_once_the_row_says_so(app, client, make_user, db, celery_app, settings,
                                                                    tmp_path):
    user, auth_headers = make_user()
    job_id = submit(client, auth_headers, new_project(client, auth_headers)).get_json()["id"]
    now = utcnow()
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id))
                        .values(status="running", lease_expires_at=now - timedelta(seconds=60),
                                started_at=now - timedelta(hours=1)))
    stream = StreamProcess(settings, tmp_path).start()
    try:
        with EventStream(stream.events_url, headers=auth_headers, params={"job_id": job_id}) as watcher:
            snapshot = watcher.next_event()
            assert (snapshot.type, snapshot.payload["status"]) == ("job.snapshot", "running")
            run(celery_app, "maintenance.reap_stuck_jobs")
            event = watcher.next_event()
            assert (event.type, event.job_id, event.payload["error_type"]) == ("job.failed", job_id,
                                                                               "TimeLimitExceeded")
            polled = client.get(f"/api/v2/jobs/{job_id}", headers=auth_headers).get_json()
            assert polled["status"] == "failed" and polled["error"]["type"] == "TimeLimitExceeded"
    finally:
        stream.stop()


def test_a_delivery_that_finds_a_cancel_pending_cancels_the_job_and_says_so(client, make_user, db, celery_app, store):
    user, auth_headers = make_user()
    job_id = submit(client, auth_headers, new_project(client, auth_headers)).get_json()["id"]
    now = utcnow()
    with db.transaction() as session:
        # Its worker died after the owner asked it to stop; the redelivery finds the request.
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id))
                        .values(status="running", attempts=1, cancel_requested_at=now,
                                lease_expires_at=now - timedelta(seconds=60), started_at=now))
    before = last_event_id(store, user.id)
    celery_app.tasks["generation.run"].apply(args=[job_id]).get()
    assert _job(db, job_id).status == "canceled"
    assert events_after(store, user.id, before) == [(job_id, "job.canceled", {})]


def test_a_delivery_that_finds_no_attempt_left_fails_the_job_and_says_so(client, make_user, db, celery_app, store):
    user, auth_headers = make_user()
    job_id = submit(client, auth_headers, new_project(client, auth_headers)).get_json()["id"]
    now = utcnow()
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id))
                        .values(status="running", attempts=Job.max_attempts,
                                lease_expires_at=now - timedelta(seconds=60), started_at=now))
    before = last_event_id(store, user.id)
    celery_app.tasks["generation.run"].apply(args=[job_id]).get()
    job = _job(db, job_id)
    assert (job.status, job.error_type) == ("failed", "WorkerLost")
    assert events_after(store, user.id, before) == [
        (job_id, "job.failed", {"error_type": "WorkerLost", "error_message": job.error_message})]
    celery_app.tasks["generation.run"].apply(args=[job_id]).get()
    assert events_after(store, user.id, before) == [
        (job_id, "job.failed", {"error_type": "WorkerLost", "error_message": job.error_message})], \
        "a redelivery of the finished job announces nothing"


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
