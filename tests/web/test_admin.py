"""The admin API: who may call it, what it reports, what it changes, and the audit trail it leaves."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from sqlalchemy import select, update

from shared import admin as admin_ops
from shared.heartbeat import KEY as BEAT_KEY, beat
from shared.models import AuditEntry, BillingAccount, Job, User, WebhookEvent
from shared.taskqueue import QUEUES
from tests.jobs_helpers import new_project, submit
from tests.peers.stripe_events import event, invoice, sign
from web.extensions import cache

PROBLEM = "application/problem+json"
WEBHOOK_SECRET = "whsec_test_devora"
BASE = "/api/v2/admin"
ROUTES = [
    ("get", "/stats", None),
    ("get", "/users?q=a", None),
    ("get", "/jobs?status=failed", None),
    ("post", f"/jobs/{uuid.uuid4()}/retry", None),
    ("post", "/jobs/replay", {"status": "failed", "dry_run": True}),
    # Refused before validation: a non-admin learns nothing about the body's rules.
    ("post", "/jobs/replay", {"status": "running", "surprise": 1}),
    ("get", "/webhooks", None),
    ("post", f"/webhooks/{uuid.uuid4()}/replay", None),
    ("post", "/cache/flush", None),
    ("get", "/customers?ids=cus_1", None),
]


@pytest.fixture
def settings_overrides(stripe_stub):
    # Limits are not under test here; customer lookups go to the Stripe stub.
    return {"ratelimit_enabled": False, "stripe_api_base": stripe_stub.url}


@pytest.fixture
def admin(make_user, db):
    """An administrator (promoted the way the CLI does it) and its authorization headers."""
    user, headers = make_user()
    with db.transaction() as session:
        admin_ops.promote(session, user.email)
    return user, headers


def make_jobs(client, headers, count: int) -> list[str]:
    project_id = new_project(client, headers, name=f"p-{uuid.uuid4().hex[:6]}")
    ids = []
    for _ in range(count):
        response = submit(client, headers, project_id)
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])
    return ids


def set_job(db, job_id: str, **values) -> None:
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(**values))


def fail(db, job_id: str) -> None:
    set_job(db, job_id, status="failed", attempts=4, error_type="RuntimeError", error_message="boom",
            finished_at=datetime.now(UTC), progress_stage="failed")


def audit_entries(db, action: str) -> list[AuditEntry]:
    with db.transaction() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def store_webhook(client) -> str:
    payload = event("invoice.paid", invoice(f"in_{uuid.uuid4().hex[:8]}", "cus_unknown"))
    headers = {"Content-Type": "application/json", "Stripe-Signature": sign(payload, WEBHOOK_SECRET)}
    response = client.post("/api/v2/webhooks/stripe", data=payload, headers=headers)
    assert response.status_code == 200
    return json.loads(payload)["id"]


def webhook_row(db, stripe_id: str, **values) -> WebhookEvent:
    """The stored event, after setting `values` on it."""
    with db.transaction() as session:
        if values:
            session.execute(update(WebhookEvent).where(WebhookEvent.stripe_event_id == stripe_id).values(**values))
        return session.scalar(select(WebhookEvent).where(WebhookEvent.stripe_event_id == stripe_id))


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_is_401_without_a_token_and_403_for_a_normal_user(client, auth_headers, method, path, body):
    anonymous = getattr(client, method)(BASE + path, json=body)
    assert anonymous.status_code == 401 and anonymous.content_type == PROBLEM
    denied = getattr(client, method)(BASE + path, json=body, headers=auth_headers)
    assert denied.status_code == 403 and denied.content_type == PROBLEM
    assert denied.get_json()["title"] == "Forbidden"


def test_stats_count_what_is_stored(client, db, app, admin, make_user):
    empty = client.get(f"{BASE}/stats", headers=admin[1]).get_json()
    assert empty["oldest_queued_job_age_seconds"] is None and set(empty["jobs_by_status"].values()) == {0}
    _, headers = make_user()
    jobs = make_jobs(client, headers, 3)
    fail(db, jobs[0])
    store_webhook(client)
    webhook_row(db, store_webhook(client), status="failed")
    dedup = app.extensions["devora"].redis
    beat(dedup)
    try:
        body = client.get(f"{BASE}/stats", headers=admin[1]).get_json()
    finally:
        dedup.delete(BEAT_KEY)
    assert body["users"] == 2
    assert body["jobs_by_status"] == {"queued": 2, "running": 0, "retrying": 0, "succeeded": 0, "failed": 1,
                                      "canceled": 0}
    assert 0 <= body["oldest_queued_job_age_seconds"] < 60
    assert body["webhook_backlog"] == 1 and body["webhooks_failed"] == 1
    assert set(body["queue_depths"]) == set(QUEUES)
    assert all(isinstance(depth, int) for depth in body["queue_depths"].values())
    assert body["workers"] == 0
    assert 0 <= body["beat_heartbeat_age_seconds"] < 60


def test_users_are_searched_by_email_or_name_any_case_and_paginated(client, db, admin, make_user):
    for index in range(3):
        make_user(f"alice-{index}@example.com")
    bob, _ = make_user("bob@example.com")
    with db.transaction() as session:
        session.get(User, bob.id).full_name = "Bob Alison"
    first = client.get(f"{BASE}/users?q=ALI&per_page=3", headers=admin[1]).get_json()
    second = client.get(f"{BASE}/users?q=ALI&per_page=3&page=2", headers=admin[1]).get_json()
    assert first["total"] == second["total"] == 4
    emails = [u["email"] for u in first["items"] + second["items"]]
    assert sorted(emails) == ["alice-0@example.com", "alice-1@example.com", "alice-2@example.com", "bob@example.com"]
    assert {"role", "is_active", "full_name"} <= set(first["items"][0])
    assert client.get(f"{BASE}/users?q=%25", headers=admin[1]).get_json()["total"] == 0, "% is literal"
    assert client.get(f"{BASE}/users", headers=admin[1]).get_json()["total"] == 5


def test_jobs_are_filtered_by_status_owner_kind_and_time(client, db, admin, make_user):
    owner, headers = make_user("owner@example.com")
    other_jobs = make_jobs(client, make_user()[1], 2)
    mine = make_jobs(client, headers, 2)
    fail(db, mine[0])
    fail(db, other_jobs[0])
    url = f"{BASE}/jobs"
    failed = client.get(f"{url}?status=failed", headers=admin[1]).get_json()
    assert failed["total"] == 2 and {j["id"] for j in failed["items"]} == {mine[0], other_jobs[0]}
    by_email = client.get(f"{url}?owner_email=OWNER@example.com", headers=admin[1]).get_json()
    assert {j["id"] for j in by_email["items"]} == set(mine)
    assert all(j["owner_email"] == "owner@example.com" and j["owner_id"] == str(owner.id) for j in by_email["items"])
    both = client.get(f"{url}?status=failed&owner_id={owner.id}&kind=fullstack", headers=admin[1]).get_json()
    assert [j["id"] for j in both["items"]] == [mine[0]]
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert client.get(f"{url}", query_string={"created_after": later}, headers=admin[1]).get_json()["total"] == 0
    assert client.get(f"{url}", query_string={"created_before": later}, headers=admin[1]).get_json()["total"] == 4
    assert client.get(f"{url}?per_page=3", headers=admin[1]).get_json()["total"] == 4


def test_retrying_a_failed_job_queues_it_again_and_is_audited(client, db, admin, auth_headers):
    job_id = make_jobs(client, auth_headers, 1)[0]
    fail(db, job_id)
    response = client.post(f"{BASE}/jobs/{job_id}/retry", headers=admin[1])
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["attempts"] == 0 and body["error"] is None
    assert body["sent_at"] is not None, "handed to the broker again"
    with db.transaction() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job.status == "queued" and job.error_message is None and job.finished_at is None
    [entry] = audit_entries(db, "jobs.retry")
    assert entry.actor_id == admin[0].id and entry.actor_email == admin[0].email
    assert entry.target_type == "job" and entry.target_id == job_id
    assert entry.details["previous_status"] == "failed" and entry.details["previous_error_type"] == "RuntimeError"


def test_a_canceled_job_can_be_retried(client, db, admin, auth_headers):
    job_id = make_jobs(client, auth_headers, 1)[0]
    assert client.post(f"/api/v2/jobs/{job_id}/cancel", headers=auth_headers).get_json()["status"] == "canceled"
    response = client.post(f"{BASE}/jobs/{job_id}/retry", headers=admin[1])
    assert response.status_code == 202 and response.get_json()["cancel_requested"] is False
    assert client.get(f"/api/v2/jobs/{job_id}", headers=auth_headers).get_json()["status"] == "queued"


@pytest.mark.parametrize("status", ["queued", "succeeded"])
def test_retrying_a_job_that_did_not_fail_is_409_and_not_audited(client, db, admin, auth_headers, status):
    job_id = make_jobs(client, auth_headers, 1)[0]
    set_job(db, job_id, status=status)
    response = client.post(f"{BASE}/jobs/{job_id}/retry", headers=admin[1])
    assert response.status_code == 409 and response.content_type == PROBLEM
    assert response.get_json()["status_now"] == status
    assert audit_entries(db, "jobs.retry") == []


def test_replay_requeues_exactly_the_jobs_its_dry_run_counted(client, db, admin, auth_headers):
    jobs = make_jobs(client, auth_headers, 5)
    for job_id in jobs[:3]:
        fail(db, job_id)
    set_job(db, jobs[3], status="canceled")
    url = f"{BASE}/jobs/replay"
    dry = client.post(url, json={"status": "failed", "dry_run": True}, headers=admin[1])
    assert dry.status_code == 200 and dry.get_json() == {"count": 3, "dry_run": True}
    assert audit_entries(db, "jobs.replay") == [], "a dry run changes nothing"
    real = client.post(url, json={"status": "failed", "dry_run": False}, headers=admin[1])
    assert real.status_code == 202
    body = real.get_json()
    assert body["count"] == 3 and sorted(body["job_ids"]) == sorted(jobs[:3])
    with db.transaction() as session:
        rows = session.scalars(select(Job).where(Job.id.in_([uuid.UUID(i) for i in jobs[:3]]))).all()
        assert all(row.status == "queued" and row.attempts == 0 and row.sent_at is not None for row in rows)
        assert session.get(Job, uuid.UUID(jobs[3])).status == "canceled"
    [entry] = audit_entries(db, "jobs.replay")
    assert entry.details == {"filter": {"status": "failed"}, "count": 3, "job_ids": body["job_ids"]}
    assert entry.actor_id == admin[0].id and entry.target_id is None
    assert client.post(url, json={"status": "failed", "dry_run": True}, headers=admin[1]).get_json()["count"] == 0


def test_replay_filters_by_kind_and_creation_time(client, db, admin, auth_headers):
    job_id = make_jobs(client, auth_headers, 1)[0]
    fail(db, job_id)
    url = f"{BASE}/jobs/replay"
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    for extra in ({"kind": "agentic"}, {"created_after": later}):
        body = client.post(url, json={"status": "failed", "dry_run": False, **extra}, headers=admin[1]).get_json()
        assert body == {"count": 0, "dry_run": False, "job_ids": []}
    body = client.post(url, json={"status": "failed", "kind": "fullstack", "created_before": later, "dry_run": False},
                       headers=admin[1]).get_json()
    assert body["job_ids"] == [job_id]


def test_webhooks_are_listed_and_a_failed_one_replayed_with_an_audit_entry(client, db, admin):
    store_webhook(client)
    stripe_id = store_webhook(client)
    sent_before = webhook_row(db, stripe_id, status="failed", attempts=5, error_type="StripeTransient",
                              error_message="down").sent_at
    listed = client.get(f"{BASE}/webhooks?status=failed", headers=admin[1]).get_json()
    assert listed["total"] == 1 and listed["items"][0]["stripe_event_id"] == stripe_id
    assert client.get(f"{BASE}/webhooks?type=invoice.paid", headers=admin[1]).get_json()["total"] == 2
    row_id = listed["items"][0]["id"]

    response = client.post(f"{BASE}/webhooks/{row_id}/replay", headers=admin[1])
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "received" and body["attempts"] == 0 and body["error_type"] is None
    row = webhook_row(db, stripe_id)
    assert row.status == "received" and row.sent_at is not None and row.sent_at > sent_before
    [entry] = audit_entries(db, "webhooks.replay")
    assert entry.target_type == "webhook_event" and entry.target_id == row_id
    assert entry.details["stripe_event_id"] == stripe_id and entry.details["previous_status"] == "failed"


@pytest.mark.parametrize("path", [f"/jobs/{uuid.uuid4()}/retry", f"/webhooks/{uuid.uuid4()}/replay"])
def test_replaying_something_unknown_is_404(client, admin, path):
    response = client.post(BASE + path, headers=admin[1])
    assert response.status_code == 404 and response.content_type == PROBLEM


def test_cache_flush_removes_only_this_apps_keys(client, app, db, admin, settings):
    redis = Redis.from_url(settings.resolved_cache_url)
    with app.app_context():
        cache.set("through-flask-caching", {"a": 1})
    pipe = redis.pipeline(transaction=False)
    for index in range(1203):
        pipe.set(f"devora:cache:bulk:{index}", "x")
    pipe.execute()
    foreign = {"foreign:key": "keep", "other:devora:cache:x": "keep", "devora:cachex": "keep"}
    redis.mset(foreign)
    ours = sum(1 for _ in redis.scan_iter(match="devora:cache:*"))
    try:
        response = client.post(f"{BASE}/cache/flush", headers=admin[1])
        assert response.status_code == 200 and response.get_json() == {"removed": ours}
        assert list(redis.scan_iter(match="devora:cache:*")) == []
        assert all(redis.get(key) == b"keep" for key in foreign)
    finally:
        redis.delete(*foreign)
    [entry] = audit_entries(db, "cache.flush")
    assert entry.target_type == "cache" and entry.target_id == "devora:cache:" and entry.details == {"removed": ours}


def test_customers_by_id_report_each_one_or_its_error(client, admin, stripe_stub):
    stripe_stub.customers["cus_alive"] = {"id": "cus_alive", "object": "customer", "email": "a@example.com",
                                          "name": "Alive", "livemode": False}
    stripe_stub.customers["cus_gone"] = {"id": "cus_gone", "object": "customer", "deleted": True}
    response = client.get(f"{BASE}/customers?ids=cus_alive,cus_missing,cus_gone,cus_alive", headers=admin[1])
    assert response.status_code == 200
    body = response.get_json()
    assert body["total"] == 3
    alive, missing, gone = body["items"]
    assert alive == {"id": "cus_alive", "email": "a@example.com", "name": "Alive", "deleted": False}
    assert missing["id"] == "cus_missing" and "404" in missing["error"] and set(missing) == {"id", "error"}
    assert gone == {"id": "cus_gone", "email": None, "name": None, "deleted": True}
    assert len(stripe_stub.requests_to("/v1/customers/cus_alive", "GET")) == 1, "each id fetched once"


def test_customers_without_ids_page_through_the_stored_ones(client, db, admin, make_user, app):
    gateway = app.extensions["devora"].gateway
    users = [make_user()[0] for _ in range(3)]
    with db.transaction() as session:
        for user in users:
            session.add(BillingAccount(user_id=user.id,
                                       stripe_customer_id=gateway.create_customer(str(user.id), user.email).id))
    first = client.get(f"{BASE}/customers?per_page=2", headers=admin[1]).get_json()
    second = client.get(f"{BASE}/customers?per_page=2&page=2", headers=admin[1]).get_json()
    assert first["total"] == second["total"] == 3 and len(first["items"]) == 2 and len(second["items"]) == 1
    assert sorted(item["email"] for item in first["items"] + second["items"]) == sorted(u.email for u in users)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/jobs/replay", {"status": "running", "dry_run": True}),
    ("post", "/jobs/replay", {"status": "failed"}),
    ("get", "/jobs?created_after=2026-01-01T00:00:00", None),
    ("get", "/customers?ids=../v1/charges", None),
    ("get", "/customers?ids=,,", None),
    ("get", "/customers?ids=" + ",".join(f"cus_{i}" for i in range(101)), None),
])
def test_invalid_input_from_an_admin_is_422(client, admin, method, path, body):
    response = getattr(client, method)(BASE + path, json=body, headers=admin[1])
    assert response.status_code == 422 and response.content_type == PROBLEM
