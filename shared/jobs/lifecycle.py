"""A job's life after submission: claimed by a delivery, kept alive by its lease, finished or retried,
canceled by its owner, reaped when its worker vanished, requeued by an operator.

Every transition is a conditional UPDATE on the row, so concurrent or repeated deliveries of
the same task can never run a job twice or finish it twice.
"""
from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from shared import quotas
from shared.errors import Conflict, NotFound
from shared.jobs.states import FINISHED, RETRYABLE, WAITING, JobStatus
from shared.models import Job, User
from shared.models.base import utcnow
from shared.settings import Settings

MAX_ERROR_LENGTH = 2000
MAX_STAGE_LENGTH = 64
MAX_DETAIL_LENGTH = 200


def requeued(*, fresh: bool) -> dict[str, Any]:
    """The one rule for putting a job back in the outbox as `queued`.

    A requeued job is claimed like a new submission, so its claim and lease go; `fresh`
    (an operator's retry) also forgets attempts, errors and results, while a job that lost
    its worker keeps its attempt count, which caps how often that may happen.
    """
    values: dict[str, Any] = {"status": JobStatus.QUEUED, "sent_at": None, "claim_token": None,
                              "lease_expires_at": None, "next_retry_at": None, "progress_stage": JobStatus.QUEUED,
                              "progress_detail": None}
    if fresh:
        # The tokens already used stay: they were spent, and the monthly budget counts them.
        values.update(attempts=0, error_type=None, error_message=None, error_details=None, cancel_requested_at=None,
                      worker=None, started_at=None, finished_at=None, result=None, progress_percent=0)
    return values


def poll_delay_seconds(job: Job, default: int) -> int:
    """Seconds a poller should wait before asking about `job` again."""
    if job.status == JobStatus.RETRYING and job.next_retry_at:
        return max(1, math.ceil((job.next_retry_at - utcnow()).total_seconds()))
    return default


def backoff_seconds(settings: Settings, attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff (1 s, 2 s, 4 s ... by default), capped, with +/-25 % jitter.

    A wait the failing service asked for (`retry_after`, already capped by its client) is
    honoured when it is longer.
    """
    nominal = min(settings.job_retry_backoff_max_seconds, settings.job_retry_backoff_seconds * 2 ** (attempt - 1))
    delay = min(settings.job_retry_backoff_max_seconds, nominal * random.uniform(0.75, 1.25))
    return max(delay, retry_after or 0.0)


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
        update(Job).where(Job.id == job.id, Job.status.in_(WAITING))
        .values(status=JobStatus.CANCELED, finished_at=now, cancel_requested_at=now, next_retry_at=None,
                progress_stage=JobStatus.CANCELED)
    ).rowcount
    if not stopped:
        asked = session.execute(
            update(Job).where(Job.id == job.id, Job.status == JobStatus.RUNNING).values(cancel_requested_at=now)
        ).rowcount
        if not asked:
            session.refresh(job)
            raise Conflict(f"the job has already {job.status}", status_now=job.status)
    session.refresh(job)
    return job


@dataclass(frozen=True)
class Claim:
    """One delivery's hold on its job; every write it makes is conditional on still holding it."""

    job_id: uuid.UUID
    token: str
    attempt: int
    max_attempts: int


@dataclass(frozen=True)
class Ended:
    """A job that a write just finished (or put back in the queue), as its watchers are told once it commits."""

    job_id: uuid.UUID
    owner_id: uuid.UUID
    kind: str
    status: JobStatus
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class ClaimRefused:
    """Why a delivery did not claim its job: finished (do nothing) or busy elsewhere (retry later).

    `ended` is set when the refusal itself finished the job (a cancel was pending, or no attempt
    was left): the caller announces it after the commit.
    """

    finished: bool
    retry_in: float = 0.0
    ended: Ended | None = None


def claim_job(session: Session, job_id: uuid.UUID, worker: str, lease_seconds: int) -> Claim | ClaimRefused:
    """Take the job for this delivery, or say why not.

    A waiting job is taken; so is a running one whose lease expired (its worker died).
    A running job with a live lease belongs to another delivery.
    """
    now = utcnow()
    token = uuid.uuid4().hex
    taken = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.cancel_requested_at.is_(None), Job.attempts < Job.max_attempts,
               or_(Job.status.in_(WAITING), (Job.status == JobStatus.RUNNING) & (Job.lease_expires_at < now)))
        .values(status=JobStatus.RUNNING, claim_token=token, worker=worker[:200], attempts=Job.attempts + 1,
                lease_expires_at=now + timedelta(seconds=lease_seconds), next_retry_at=None,
                started_at=func.coalesce(Job.started_at, now), progress_stage="starting",
                progress_detail=None)
    ).rowcount
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        return ClaimRefused(finished=True)
    if taken:
        return Claim(job.id, token, job.attempts, job.max_attempts)
    if job.status in FINISHED:
        return ClaimRefused(finished=True)
    if job.cancel_requested_at is not None:
        canceled = _finish(session, job.id, None, status=JobStatus.CANCELED, progress_stage=JobStatus.CANCELED)
        return ClaimRefused(finished=True, ended=Ended(job.id, job.owner_id, job.kind, JobStatus.CANCELED)
                            if canceled else None)
    if job.status == JobStatus.RUNNING and job.lease_expires_at and job.lease_expires_at >= now:
        return ClaimRefused(finished=False, retry_in=(job.lease_expires_at - now).total_seconds() + 0.5)
    # Claimable but out of attempts: every earlier delivery died with its worker.
    message = f"the job's worker was lost on each of its {job.attempts} attempts"
    failed = _finish(session, job.id, None, status=JobStatus.FAILED, progress_stage=JobStatus.FAILED,
                     error_type="WorkerLost", error_message=message)
    return ClaimRefused(finished=True, ended=Ended(job.id, job.owner_id, job.kind, JobStatus.FAILED, "WorkerLost",
                                                   message) if failed else None)


@dataclass(frozen=True)
class Progress:
    """Where a running job is: percent and stage, what happens inside the stage, the job's tokens so far."""

    percent: int
    stage: str
    detail: str | None = None
    tokens: int | None = None


class Lease(NamedTuple):
    """What a renewal found: whether the claim still owns the job, and whether its owner asked it to stop."""

    owned: bool
    cancel_requested: bool


def renew_lease(session: Session, claim: Claim, lease_seconds: int, progress: Progress | None = None) -> Lease:
    """Extend the lease and record `progress`, in one statement that also reads a pending cancel."""
    values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=lease_seconds)}
    if progress is not None:
        values.update(progress_percent=progress.percent, progress_stage=progress.stage[:MAX_STAGE_LENGTH],
                      progress_detail=_bounded(progress.detail, MAX_DETAIL_LENGTH))
        if progress.tokens is not None:
            values.update(progress_tokens=progress.tokens)
    row = session.execute(
        update(Job).where(Job.id == claim.job_id, Job.claim_token == claim.token, Job.status == JobStatus.RUNNING)
        .values(**values).returning(Job.cancel_requested_at).execution_options(synchronize_session=False)
    ).first()
    return Lease(owned=row is not None, cancel_requested=row is not None and row.cancel_requested_at is not None)


def cancel_requested(session: Session, job_id: uuid.UUID) -> bool:
    return session.scalar(select(Job.cancel_requested_at).where(Job.id == job_id)) is not None


def lock_claimed(session: Session, claim: Claim) -> Job | None:
    """The job, locked, if this claim still owns it and it is still running.

    The owner's row is locked first: users, then jobs, then projects is the order every
    writer follows, so finishing a job cannot deadlock with the owner's requests.
    """
    owner_id = session.scalar(select(Job.owner_id).where(Job.id == claim.job_id))
    if owner_id is None:
        return None
    session.execute(select(User.id).where(User.id == owner_id).with_for_update())
    return session.scalar(select(Job).where(Job.id == claim.job_id, Job.claim_token == claim.token,
                                            Job.status == JobStatus.RUNNING).with_for_update())


def finish(session: Session, claim: Claim, *, status: JobStatus, result: dict[str, Any] | None = None,
           error: BaseException | None = None, error_type: str | None = None,
           details: dict[str, Any] | None = None) -> bool:
    """End the job of this claim as succeeded, failed or canceled; False if the claim was lost.

    `details` is what a failure leaves to look at; the caller keeps it small.
    """
    fields: dict[str, Any] = {"progress_stage": status, "progress_detail": None}
    if status == JobStatus.SUCCEEDED:
        fields.update(result=result, progress_percent=100, error_type=None, error_message=None, error_details=None)
    if error is not None:
        fields.update(error_type=error_type or type(error).__name__, error_message=_message(error),
                      error_details=details)
    return _finish(session, claim.job_id, claim.token, status=status, **fields)


def schedule_retry(session: Session, claim: Claim, error: BaseException, delay_seconds: float) -> bool:
    """Release the job to wait for its next attempt, recording the error that caused it."""
    return session.execute(
        update(Job).where(Job.id == claim.job_id, Job.claim_token == claim.token, Job.status == JobStatus.RUNNING)
        .values(status=JobStatus.RETRYING, next_retry_at=utcnow() + timedelta(seconds=delay_seconds),
                error_type=type(error).__name__, error_message=_message(error), error_details=None,
                claim_token=None, lease_expires_at=None, progress_stage="waiting to retry", progress_detail=None)
    ).rowcount == 1


def charge_usage(session: Session, job_id: uuid.UUID, usage: Mapping[str, Mapping[str, int]]) -> int:
    """Add one attempt's model tokens ({stage: {"prompt_tokens", "completion_tokens"}}) to the job's.

    Every attempt starts counting from zero, so the job's figures are the sum over its attempts.
    Tokens are charged whatever became of the attempt, and whether or not it still holds the
    job: they were spent. Returns the job's total.
    """
    spent = sum(int(count) for counts in usage.values() for count in counts.values())
    stored = session.execute(select(Job.token_usage, Job.tokens_used, Job.owner_id, Job.kind, Job.created_at)
                             .where(Job.id == job_id).with_for_update()).one()
    if not spent:
        return stored.tokens_used
    merged = {stage: dict(counts) for stage, counts in (stored.token_usage or {}).items()}
    for stage, counts in usage.items():
        into = merged.setdefault(stage, {"prompt_tokens": 0, "completion_tokens": 0})
        for name in ("prompt_tokens", "completion_tokens"):
            into[name] = into.get(name, 0) + int(counts.get(name, 0))
    total = stored.tokens_used + spent
    session.execute(update(Job).where(Job.id == job_id).values(token_usage=merged, tokens_used=total,
                                                                progress_tokens=total))
    quotas.charge_tokens(session, stored, spent)
    return total


@dataclass(frozen=True)
class Reaped:
    """What a reap changed: jobs failed past the hard limit, jobs put back in the queue, lost messages resent.

    `failed` and `requeued` changed state and are announced once the reap commits; `resent` were
    queued already and only go back to the outbox (their watchers see no change).
    """

    failed: list[Ended]
    requeued: list[Ended]
    resent: int


def reap(session: Session, *, now: datetime, hard_limit_seconds: float, grace_seconds: float,
         lost_message_seconds: float) -> Reaped:
    """Deal with jobs nobody is working on, one statement per rule, each returning the rows it changed.

    A running job whose lease ran out lost its worker: past the hard time limit it
    fails, otherwise it goes back to the outbox for another attempt. A retrying job
    whose retry message never arrived goes back to the outbox too, and so does a queued
    job sent longer ago than any broker would hold a message (it was lost).
    """
    cutoff = now - timedelta(seconds=grace_seconds)
    message = f"the job was still running after the {int(hard_limit_seconds)} s hard time limit"
    failed = session.execute(
        update(Job)
        .where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < cutoff,
               Job.started_at < now - timedelta(seconds=hard_limit_seconds))
        .values(status=JobStatus.FAILED, finished_at=now, claim_token=None, lease_expires_at=None,
                progress_stage=JobStatus.FAILED, error_type="TimeLimitExceeded", error_message=message)
        .returning(Job.id, Job.owner_id, Job.kind).execution_options(synchronize_session=False)
    ).all()
    abandoned = or_((Job.status == JobStatus.RUNNING) & (Job.lease_expires_at < cutoff),
                    (Job.status == JobStatus.RETRYING) & (Job.next_retry_at < cutoff))
    requeued_rows = session.execute(
        update(Job).where(abandoned).values(**requeued(fresh=False))
        .returning(Job.id, Job.owner_id, Job.kind).execution_options(synchronize_session=False)
    ).all()
    resent = session.execute(
        update(Job).where(Job.status == JobStatus.QUEUED, Job.sent_at < now - timedelta(seconds=lost_message_seconds))
        .values(**requeued(fresh=False)).execution_options(synchronize_session=False)
    ).rowcount
    return Reaped(failed=[Ended(row.id, row.owner_id, row.kind, JobStatus.FAILED, "TimeLimitExceeded", message)
                          for row in failed],
                  requeued=[Ended(row.id, row.owner_id, row.kind, JobStatus.QUEUED) for row in requeued_rows],
                  resent=resent)


def retry_by_operator(session: Session, job_id: uuid.UUID) -> tuple[Job, dict[str, Any]]:
    """Put a failed or canceled job back in the queue as if new; returns it and what it was before."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound("job not found")
    before = {"previous_status": job.status, "previous_attempts": job.attempts,
              "previous_error_type": job.error_type}
    # Conditional, like every job transition: a concurrent change of state wins over the retry.
    done = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(RETRYABLE)).values(**requeued(fresh=True))
    ).rowcount
    session.refresh(job)
    if not done:
        raise Conflict(f"only failed or canceled jobs can be retried; this one is {job.status}",
                       status_now=job.status)
    return job, before


@dataclass(frozen=True)
class ReplayFilter:
    status: JobStatus
    kind: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def select_for_replay(criteria: ReplayFilter) -> Select:
    """The ids of the jobs a replay with `criteria` requeues; a dry run counts the very same rows."""
    if criteria.status not in RETRYABLE:
        raise ValueError(f"only {' or '.join(sorted(RETRYABLE))} jobs can be replayed")
    statement = select(Job.id).where(Job.status == criteria.status)
    if criteria.kind:
        statement = statement.where(Job.kind == criteria.kind)
    if criteria.created_after:
        statement = statement.where(Job.created_at >= criteria.created_after)
    if criteria.created_before:
        statement = statement.where(Job.created_at < criteria.created_before)
    return statement


def count_for_replay(session: Session, criteria: ReplayFilter) -> int:
    """How many jobs a replay with `criteria` would requeue now."""
    return session.scalar(select(func.count()).select_from(select_for_replay(criteria).subquery())) or 0


def replay(session: Session, criteria: ReplayFilter) -> list[Job]:
    """Requeue every job the selection matches, in one statement; returns them, ordered by id."""
    # Choosing and requeueing in one statement: no job can change state in between, so the
    # rows returned are exactly the rows changed.
    ids = session.scalars(
        update(Job).where(Job.id.in_(select_for_replay(criteria)))
        .values(**requeued(fresh=True)).returning(Job.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(session.scalars(select(Job).where(Job.id.in_(ids)).execution_options(populate_existing=True)),
                  key=lambda job: job.id)


def _finish(session: Session, job_id: uuid.UUID, token: str | None, *, status: JobStatus, **fields: Any) -> bool:
    conditions = [Job.id == job_id, Job.status.not_in(FINISHED)]
    if token is not None:
        conditions.append(Job.claim_token == token)
    return session.execute(
        update(Job).where(*conditions)
        .values(status=status, finished_at=utcnow(), claim_token=None, lease_expires_at=None, next_retry_at=None,
                **fields)
    ).rowcount == 1


def _message(error: BaseException) -> str:
    return _bounded(str(error) or type(error).__name__, MAX_ERROR_LENGTH)


def _bounded(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"
