"""Submitting jobs: one helper per kind, idempotency keys, and the plan quota check.

A submission only records the job (in the caller's transaction), already marked sent; once that
commits, the caller hands it to the broker with `shared.jobs.outbox.JOBS.hand_over_marked`.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import quotas
from shared.billing import Plan
from shared.errors import Conflict, NotFound
from shared.jobs.kinds import KINDS, JobKind
from shared.jobs.states import ACTIVE, JobStatus
from shared.models import BillingAccount, IdempotencyKey, Job, Project
from shared.models.base import utcnow
from shared.settings import Settings


# Built once: every submission runs them (Core statements on the session's connection).
_OWNED_PROJECT = select(Project.__table__.c.id).where(Project.__table__.c.id == bindparam("project_id"),
                                                       Project.__table__.c.owner_id == bindparam("owner_id"))
_INSERT_JOB = insert(Job.__table__)
_INSERT_KEY = insert(IdempotencyKey.__table__)
# A new job's columns beyond who, what and when.
_NEW_JOB = {"status": JobStatus.QUEUED, "progress_percent": 0, "progress_stage": JobStatus.QUEUED,
            "progress_detail": None, "progress_tokens": 0, "attempts": 0, "next_retry_at": None, "error_type": None,
            "error_message": None, "error_details": None, "result": None, "token_usage": None, "tokens_used": 0,
            "cancel_requested_at": None, "claim_token": None, "worker": None, "lease_expires_at": None,
            "started_at": None, "finished_at": None}


def request_fingerprint(kind: str, body: dict[str, Any]) -> str:
    """A stable hash of what was asked, to tell a retried request from a different one."""
    return hashlib.sha256(json.dumps([kind, body], sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def submit_generation(session: Session, settings: Settings, *, owner_id: uuid.UUID, kind: JobKind,
                      project_id: uuid.UUID, payload: dict[str, Any], idempotency_key: str | None,
                      plan: Plan | None = None) -> tuple[Job, bool]:
    """Record a generation job for one of the owner's projects; returns the job and whether it is new.

    A request repeated with its Idempotency-Key is answered with the original job before the
    plan's quota is checked, so a retry is never charged twice. `plan`: the owner's, when the
    caller has read it already.
    """
    if not KINDS[kind].is_generation:
        raise ValueError(f"{kind} is not a generation kind")
    if session.connection().execute(_OWNED_PROJECT, {"project_id": project_id, "owner_id": owner_id}).first() is None:
        raise NotFound("project not found")
    fingerprint = request_fingerprint(kind, {"project_id": str(project_id), **payload})
    if idempotency_key:
        replayed = find_replay(session, owner_id, idempotency_key, fingerprint)
        if replayed is not None:
            return replayed, False
    quotas.take_generation(session, owner_id, settings, plan)
    return _record(session, settings, owner_id=owner_id, kind=kind, project_id=project_id, payload=payload,
                   idempotency_key=idempotency_key, fingerprint=fingerprint)


def submit_billing_sync(session: Session, settings: Settings, owner_id: uuid.UUID) -> Job:
    """Record a job refreshing the owner's billing mirror from Stripe."""
    job, _ = _record(session, settings, owner_id=owner_id, kind=JobKind.BILLING_SYNC, project_id=None,
                     payload={}, idempotency_key=None, fingerprint=None)
    return job


def _record(session: Session, settings: Settings, *, owner_id: uuid.UUID, kind: JobKind,
            project_id: uuid.UUID | None, payload: dict[str, Any], idempotency_key: str | None,
            fingerprint: str | None) -> tuple[Job, bool]:
    now = utcnow()
    # Every column given, so the row needs no flush to be read back. Marked sent already: the
    # submitter hands it over right after the commit (Outbox.hand_over_marked).
    values = dict(_NEW_JOB, id=uuid.uuid4(), owner_id=owner_id, project_id=project_id, kind=kind, payload=payload,
                  max_attempts=settings.job_max_attempts, sent_at=now, created_at=now, updated_at=now)
    if idempotency_key:
        try:
            with session.begin_nested():
                session.connection().execute(_INSERT_JOB, values)
                session.connection().execute(_INSERT_KEY, {
                    "id": uuid.uuid4(), "owner_id": owner_id, "key": idempotency_key, "request_hash": fingerprint,
                    "job_id": values["id"], "created_at": now,
                    "expires_at": now + timedelta(seconds=settings.idempotency_key_ttl_seconds)})
        except IntegrityError:
            # A concurrent request with the same key won the insert: answer with its job.
            existing = find_replay(session, owner_id, idempotency_key, fingerprint)
            if existing is None:
                raise Conflict("a request with this Idempotency-Key is being processed; retry shortly") from None
            return existing, False
    else:
        session.connection().execute(_INSERT_JOB, values)
    return Job(**values), True


def find_replay(session: Session, owner_id: uuid.UUID, key: str, fingerprint: str | None) -> Job | None:
    """The job an earlier request with this key created; 409 if that request differed; None if unseen."""
    record = session.scalar(select(IdempotencyKey).where(IdempotencyKey.owner_id == owner_id,
                                                         IdempotencyKey.key == key))
    if record is None:
        return None
    if record.expires_at <= utcnow():
        session.delete(record)
        session.flush()
        return None
    if record.request_hash != fingerprint:
        raise Conflict("this Idempotency-Key was already used with a different request body",
                       type_slug="idempotency-key-reused")
    return session.get(Job, record.job_id)


def purge_expired_idempotency_keys(session: Session, *, now: datetime) -> int:
    return session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now)).rowcount


def submit_subscriber_syncs(session: Session, settings: Settings) -> list[Job]:
    """Record a billing sync for every customer with a subscription, but none for a user with one in flight."""
    owners = session.scalars(select(BillingAccount.user_id).where(
        BillingAccount.subscription_id.is_not(None), BillingAccount.customer_deleted.is_(False))).all()
    busy = set(session.scalars(select(Job.owner_id).where(Job.kind == JobKind.BILLING_SYNC,
                                                          Job.status.in_(ACTIVE))))
    return [submit_billing_sync(session, settings, owner_id) for owner_id in owners if owner_id not in busy]
