"""The job record's life: submission, claiming by a worker, progress, and how it ends.

Every transition is a conditional UPDATE on the row, so concurrent or repeated
deliveries of the same task can never run a job twice or finish it twice.
"""
from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import Conflict, NotFound
from shared.models import IdempotencyKey, Job, User
from shared.models.base import utcnow
from shared.models.jobs import FINISHED_STATES

MAX_ERROR_LENGTH = 2000


def request_fingerprint(kind: str, body: dict[str, Any]) -> str:
    """A stable hash of what was asked, to tell a retried request from a different one."""
    return hashlib.sha256(json.dumps([kind, body], sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def submit(session: Session, *, owner_id: uuid.UUID, kind: str, task_name: str, payload: dict[str, Any],
           project_id: uuid.UUID | None, max_attempts: int, idempotency_key: str | None = None,
           fingerprint: str | None = None, key_ttl_seconds: int = 86400) -> tuple[Job, bool]:
    """Record a queued job (and its idempotency key) in the caller's transaction.

    Returns the job and whether it is new; a key seen before with the same request
    returns the original job, with a different request it is a 409.
    """
    now = utcnow()
    if idempotency_key:
        existing = find_replay(session, owner_id, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
    job = Job(owner_id=owner_id, project_id=project_id, kind=kind, task_name=task_name, payload=payload,
              max_attempts=max_attempts, status="queued", progress_stage="queued")
    session.add(job)
    session.flush()
    if idempotency_key:
        record = IdempotencyKey(owner_id=owner_id, key=idempotency_key, request_hash=fingerprint, job_id=job.id,
                                created_at=now, expires_at=now + timedelta(seconds=key_ttl_seconds))
        try:
            with session.begin_nested():
                session.add(record)
        except IntegrityError:
            # A concurrent request with the same key won the insert: answer with its job.
            session.expunge(job)
            existing = find_replay(session, owner_id, idempotency_key, fingerprint)
            if existing is None:
                raise Conflict("a request with this Idempotency-Key is being processed; retry shortly") from None
            return existing, False
    return job, True


def find_replay(session: Session, owner_id: uuid.UUID, key: str, fingerprint: str | None) -> Job | None:
    """The job an earlier request with this key created; 409 if that request differed; None if unseen."""
    now = utcnow()
    record = session.scalar(select(IdempotencyKey).where(IdempotencyKey.owner_id == owner_id,
                                                         IdempotencyKey.key == key))
    if record is None:
        return None
    if record.expires_at <= now:
        session.delete(record)
        session.flush()
        return None
    if record.request_hash != fingerprint:
        raise Conflict("this Idempotency-Key was already used with a different request body",
                       type_slug="idempotency-key-reused")
    return session.get(Job, record.job_id)


def poll_delay_seconds(job: Job, default: int) -> int:
    """Seconds a poller should wait before asking about `job` again."""
    if job.status == "retrying" and job.next_retry_at:
        return max(1, math.ceil((job.next_retry_at - utcnow()).total_seconds()))
    return default


def mark_sent(session: Session, job_id: uuid.UUID) -> None:
    session.execute(update(Job).where(Job.id == job_id, Job.sent_at.is_(None)).values(sent_at=utcnow()))


def get_owned(session: Session, owner_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, Job.owner_id == owner_id))
    if job is None:
        raise NotFound("job not found")
    return job


def list_owned(session: Session, owner_id: uuid.UUID, *, status: str | None, kind: str | None,
               project_id: uuid.UUID | None, page: int, per_page: int) -> tuple[list[Job], int]:
    conditions = [Job.owner_id == owner_id]
    if status:
        conditions.append(Job.status == status)
    if kind:
        conditions.append(Job.kind == kind)
    if project_id:
        conditions.append(Job.project_id == project_id)
    total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    rows = session.scalars(select(Job).where(*conditions).order_by(Job.created_at.desc(), Job.id)
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return list(rows), total


def request_cancel(session: Session, job: Job) -> Job:
    """Cancel a waiting job at once; ask a running one to stop at its next step; 409 when finished."""
    now = utcnow()
    stopped = session.execute(
        update(Job).where(Job.id == job.id, Job.status.in_(("queued", "retrying")))
        .values(status="canceled", finished_at=now, cancel_requested_at=now, next_retry_at=None,
                progress_stage="canceled")
    ).rowcount
    if not stopped:
        asked = session.execute(
            update(Job).where(Job.id == job.id, Job.status == "running").values(cancel_requested_at=now)
        ).rowcount
        if not asked:
            session.refresh(job)
            raise Conflict(f"the job has already {job.status}", status_now=job.status)
    session.refresh(job)
    return job


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    token: str
    attempt: int
    max_attempts: int


@dataclass(frozen=True)
class ClaimRefused:
    """Why a delivery did not claim its job: finished (do nothing) or busy elsewhere (retry later)."""

    finished: bool
    retry_in: float = 0.0


def claim(session: Session, job_id: uuid.UUID, worker: str, lease_seconds: int) -> Claim | ClaimRefused:
    """Take the job for this delivery, or say why not.

    A queued or retrying job is taken; so is a running one whose lease expired (its
    worker died). A running job with a live lease belongs to another delivery.
    """
    now = utcnow()
    token = uuid.uuid4().hex
    taken = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.cancel_requested_at.is_(None), Job.attempts < Job.max_attempts,
               or_(Job.status.in_(("queued", "retrying")),
                   (Job.status == "running") & (Job.lease_expires_at < now)))
        .values(status="running", claim_token=token, worker=worker[:200], attempts=Job.attempts + 1,
                lease_expires_at=now + timedelta(seconds=lease_seconds), next_retry_at=None,
                started_at=func.coalesce(Job.started_at, now), progress_stage="starting")
    ).rowcount
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        return ClaimRefused(finished=True)
    if taken:
        return Claim(job.id, token, job.attempts, job.max_attempts)
    if job.status in FINISHED_STATES:
        return ClaimRefused(finished=True)
    if job.cancel_requested_at is not None:
        _finish(session, job.id, None, status="canceled", progress_stage="canceled")
        return ClaimRefused(finished=True)
    if job.status == "running" and job.lease_expires_at and job.lease_expires_at >= now:
        return ClaimRefused(finished=False, retry_in=(job.lease_expires_at - now).total_seconds() + 0.5)
    # Claimable but out of attempts: every earlier delivery died with its worker.
    _finish(session, job.id, None, status="failed", error_type="WorkerLost",
            error_message=f"the job's worker was lost on each of its {job.attempts} attempts")
    return ClaimRefused(finished=True)


def heartbeat(session: Session, claim_: Claim, lease_seconds: int, percent: int | None = None,
              stage: str | None = None) -> bool | None:
    """Renew the lease (and record progress); None if the claim was lost, else whether cancel was asked."""
    values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=lease_seconds)}
    if percent is not None:
        values.update(progress_percent=percent, progress_stage=stage or "")
    owned = session.execute(
        update(Job).where(Job.id == claim_.job_id, Job.claim_token == claim_.token, Job.status == "running")
        .values(**values)
    ).rowcount
    if not owned:
        return None
    return session.scalar(select(Job.cancel_requested_at).where(Job.id == claim_.job_id)) is not None


def lock_claimed(session: Session, claim_: Claim) -> Job | None:
    """The job, locked, if this claim still owns it and it is still running.

    The owner's row is locked first: users, then jobs, then projects is the order every
    writer follows, so finishing a job cannot deadlock with the owner's requests.
    """
    owner_id = session.scalar(select(Job.owner_id).where(Job.id == claim_.job_id))
    if owner_id is None:
        return None
    session.execute(select(User.id).where(User.id == owner_id).with_for_update())
    return session.scalar(select(Job).where(Job.id == claim_.job_id, Job.claim_token == claim_.token,
                                            Job.status == "running").with_for_update())


def finish(session: Session, claim_: Claim, *, status: str, result: dict[str, Any] | None = None,
           error: BaseException | None = None, error_type: str | None = None) -> bool:
    """End the job of this claim as succeeded, failed or canceled; False if the claim was lost."""
    fields: dict[str, Any] = {"progress_stage": status}
    if status == "succeeded":
        fields.update(result=result, progress_percent=100, error_type=None, error_message=None)
    if error is not None:
        fields.update(error_type=error_type or type(error).__name__, error_message=_message(error))
    return _finish(session, claim_.job_id, claim_.token, status=status, **fields)


def schedule_retry(session: Session, claim_: Claim, error: BaseException, delay_seconds: float) -> bool:
    """Release the job to wait for its next attempt, recording the error that caused it."""
    return session.execute(
        update(Job).where(Job.id == claim_.job_id, Job.claim_token == claim_.token, Job.status == "running")
        .values(status="retrying", next_retry_at=utcnow() + timedelta(seconds=delay_seconds),
                error_type=type(error).__name__, error_message=_message(error), claim_token=None,
                lease_expires_at=None, progress_stage="waiting to retry")
    ).rowcount == 1


def _finish(session: Session, job_id: uuid.UUID, token: str | None, *, status: str, **fields: Any) -> bool:
    conditions = [Job.id == job_id, Job.status.not_in(tuple(FINISHED_STATES))]
    if token is not None:
        conditions.append(Job.claim_token == token)
    return session.execute(
        update(Job).where(*conditions)
        .values(status=status, finished_at=utcnow(), claim_token=None, lease_expires_at=None, next_retry_at=None,
                **fields)
    ).rowcount == 1


def _message(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
