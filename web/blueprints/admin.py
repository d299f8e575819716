"""Operator endpoints: counts, searches, job and webhook replays, cache flush and Stripe lookups."""
from __future__ import annotations

import logging
from dataclasses import asdict

import stripe
from flask_openapi3 import APIBlueprint, Tag
from redis import Redis
from redis.exceptions import RedisError

from shared import admin, webhooks
from shared.errors import Forbidden, ServiceUnavailable
from shared.heartbeat import beat_age_seconds
from shared.integrations.stripe_gateway import StripeGatewayError
from shared.jobs import lifecycle
from shared.jobs.outbox import JOBS, WEBHOOK_EVENTS
from shared.models import Job, User
from shared.queues import queue_depths, worker_count
from shared.schemas.admin import (
    AdminJobOut, AdminJobPage, AdminJobPath, AdminJobQuery, AdminUserOut, AdminUserPage, CacheFlushOut,
    CustomerError, CustomerFound, CustomerPage, CustomerQuery, ReplayBody, ReplayOut, StatsOut, UserSearchQuery,
    WebhookEventOut, WebhookEventPath, WebhookListQuery, WebhookPage,
)
from shared.schemas.jobs import JobOut
from web.auth import authenticated_account, current_user
from web.dispatch import announcer, enqueue, enqueue_new_job
from web.extensions import cache
from web.openapi import BEARER, responses
from web.state import db_session, state

logger = logging.getLogger(__name__)
bp = APIBlueprint("admin", __name__, url_prefix="/api/v2/admin", abp_tags=[Tag(name="admin")], abp_security=BEARER)


@bp.before_request
def _require_admin() -> None:
    # Runs before any input is validated, so a non-admin gets 403 whatever the request holds.
    # The role is read from the database, not the token: a demotion takes effect at once.
    if authenticated_account().role != admin.ADMIN_ROLE:
        raise Forbidden("this operation is reserved for administrators")


@bp.get("/stats", responses=responses({200: StatsOut}, 401, 403))
def stats():
    """Users, jobs per state, webhook backlog, broker queue depths, live workers and beat's last tick."""
    producer = state().producer
    return StatsOut(**asdict(admin.stats(db_session())), queue_depths=queue_depths(producer),
                    workers=worker_count(producer), beat_heartbeat_age_seconds=beat_age_seconds(state().redis)
                    ).model_dump(mode="json")


@bp.get("/users", responses=responses({200: AdminUserPage}, 401, 403))
def list_users(query: UserSearchQuery):
    """Accounts whose email or name contains `q`, newest first."""
    rows, total = admin.search_users(db_session(), query.q, page=query.page, per_page=query.per_page)
    return AdminUserPage(items=[AdminUserOut.model_validate(user) for user in rows], page=query.page,
                         per_page=query.per_page, total=total).model_dump(mode="json")


@bp.get("/jobs", responses=responses({200: AdminJobPage}, 401, 403))
def list_jobs(query: AdminJobQuery):
    """Every user's jobs, newest first, by state, kind, owner and creation time."""
    criteria = admin.JobFilter(status=query.status, kind=query.kind, owner_id=query.owner_id,
                               owner_email=query.owner_email, created_after=query.created_after,
                               created_before=query.created_before)
    rows, total = admin.list_jobs(db_session(), criteria, page=query.page, per_page=query.per_page)
    return AdminJobPage(items=[_admin_job(job, email) for job, email in rows], page=query.page,
                        per_page=query.per_page, total=total).model_dump(mode="json")


@bp.post("/jobs/<uuid:job_id>/retry", responses=responses({202: AdminJobOut}, 401, 403, 404, 409))
def retry_job(path: AdminJobPath):
    """Queue a failed or canceled job again with its attempts reset; 409 for a job in any other state."""
    session = db_session()
    job, before = lifecycle.retry_by_operator(session, path.job_id)
    admin.record_audit(session, current_user(), "jobs.retry", "job", str(job.id),
                       {**before, "kind": job.kind, "owner_id": str(job.owner_id)})
    session.commit()
    enqueue_new_job(job)
    session.refresh(job)
    return _admin_job(job, session.get(User, job.owner_id).email).model_dump(mode="json"), 202


@bp.post("/jobs/replay", responses=responses({200: ReplayOut, 202: ReplayOut}, 401, 403))
def replay_jobs(body: ReplayBody):
    """Queue again every failed (or canceled) job matching the filter; a dry run only counts them."""
    criteria = lifecycle.ReplayFilter(status=body.status, kind=body.kind, created_after=body.created_after,
                                      created_before=body.created_before)
    session = db_session()
    if body.dry_run:
        count = lifecycle.count_for_replay(session, criteria)
        return ReplayOut(count=count, dry_run=True).model_dump(mode="json", exclude_none=True)
    requeued = lifecycle.replay(session, criteria)
    job_ids = [str(job.id) for job in requeued]
    admin.record_audit(session, current_user(), "jobs.replay", "job", None,
                       {"filter": body.model_dump(mode="json", exclude={"dry_run"}, exclude_none=True),
                        "count": len(requeued), "job_ids": job_ids})
    session.commit()
    JOBS.hand_over_all(state().producer, state().db, [JOBS.dispatch(job) for job in requeued])
    for job in requeued:
        announcer(job).queued(job.kind)
    return ReplayOut(count=len(requeued), dry_run=False, job_ids=job_ids).model_dump(mode="json"), 202


@bp.get("/webhooks", responses=responses({200: WebhookPage}, 401, 403))
def list_webhooks(query: WebhookListQuery):
    """Stored Stripe events, newest first, by processing state or event type."""
    rows, total = admin.list_webhooks(db_session(), status=query.status, event_type=query.type, page=query.page,
                                      per_page=query.per_page)
    return WebhookPage(items=[WebhookEventOut.model_validate(row) for row in rows], page=query.page,
                       per_page=query.per_page, total=total).model_dump(mode="json")


@bp.post("/webhooks/<uuid:event_id>/replay", responses=responses({202: WebhookEventOut}, 401, 403, 404))
def replay_webhook(path: WebhookEventPath):
    """Process a stored Stripe event again, whatever happened to it before."""
    session = db_session()
    row, before = webhooks.replay(session, str(path.event_id))
    admin.record_audit(session, current_user(), "webhooks.replay", "webhook_event", str(row.id), before)
    session.commit()
    enqueue(row, WEBHOOK_EVENTS)
    session.refresh(row)
    return WebhookEventOut.model_validate(row).model_dump(mode="json"), 202


@bp.post("/cache/flush", responses=responses({200: CacheFlushOut}, 401, 403, 503))
def flush_cache():
    """Delete this app's cache entries (only keys under its prefix); answers how many went."""
    client, prefix = _cache_client()
    try:
        removed = admin.delete_prefixed(client, prefix)
    except (RedisError, OSError) as error:
        logger.warning("cache flush failed: %s", type(error).__name__)
        raise ServiceUnavailable("the cache could not be reached; try again shortly") from None
    # The keys are gone whether or not this commits, so the entry has its own transaction.
    session = db_session()
    admin.record_audit(session, current_user(), "cache.flush", "cache", prefix, {"removed": removed})
    session.commit()
    return CacheFlushOut(removed=removed).model_dump()


@bp.get("/customers", responses=responses({200: CustomerPage}, 401, 403, 503))
def list_customers(query: CustomerQuery):
    """Stripe's view of the given customers, or of our stored customers page by page; errors per id."""
    if query.ids:
        ids = query.id_list
        page, per_page, total = 1, len(ids), len(ids)
    else:
        ids, total = admin.stored_customer_ids(db_session(), page=query.page, per_page=query.per_page)
        page, per_page = query.page, query.per_page
    found = state().gateway.retrieve_customers(ids)
    return CustomerPage(items=[_customer(customer_id, found[customer_id]) for customer_id in ids], page=page,
                        per_page=per_page, total=total).model_dump(mode="json")


def _admin_job(job: Job, owner_email: str) -> AdminJobOut:
    return AdminJobOut(**JobOut.of(job).model_dump(), owner_id=job.owner_id, owner_email=owner_email,
                       task_name=job.task_name, sent_at=job.sent_at)


def _cache_client() -> tuple[Redis, str]:
    """The Redis client and key prefix Flask-Caching built from the app config."""
    backend = cache.cache
    # cachelib has no public accessor for its client. The write client is the right one: under
    # Sentinel the read client may be a replica. Its `clear()` is no substitute: it runs the
    # blocking KEYS command, and FLUSHDB when no prefix is set.
    prefix = backend.key_prefix() if callable(backend.key_prefix) else backend.key_prefix
    return backend._write_client, prefix


def _customer(customer_id: str, result: stripe.Customer | StripeGatewayError) -> CustomerFound | CustomerError:
    if isinstance(result, StripeGatewayError):
        return CustomerError(id=customer_id, error=str(result))
    fields = result.to_dict()
    return CustomerFound(id=customer_id, email=fields.get("email"), name=fields.get("name"),
                         deleted=bool(fields.get("deleted", False)))
