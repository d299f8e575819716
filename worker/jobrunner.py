"""One delivery of a job task: claim the row, keep its lease, do the work, end it properly."""
from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import logcontext
from shared.db import Database
from shared.errors import DomainError
from shared.jobs import lifecycle
from shared.jobs.announce import Announcer, announce_ended
from shared.jobs.lifecycle import Claim, Progress, backoff_seconds
from shared.jobs.states import JobStatus
from shared.models import Job
from shared.models.base import utcnow
from shared.settings import Settings
from worker.context import database_of, events_of, settings_of
from worker.job_reporter import JobReporter

logger = logging.getLogger(__name__)


class JobCanceled(Exception):
    """The owner asked the job to stop; it ends as canceled without writing anything."""


class ClaimLost(Exception):
    """Another delivery took the job over after this one's lease ran out."""


class JobFailed(Exception):
    """A permanent failure the work has explained: recorded as `error_type`, with `details`, and no traceback."""

    def __init__(self, message: str, *, error_type: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.details = details


@dataclass(frozen=True)
class JobOutcome:
    """A finished job's result, and the writes that must land in the same transaction as its success."""

    result: dict[str, Any]
    apply: Callable[[Session, Job], None] | None = None


@dataclass
class JobContext:
    """What the work of a job sees: its inputs, and ways to report progress and notice a cancel.

    Progress and cancel go through the job's reporter thread, so neither waits on the database.
    """

    job_id: uuid.UUID
    owner_id: uuid.UUID
    project_id: uuid.UUID | None
    kind: str
    payload: dict[str, Any]
    attempt: int
    settings: Settings
    db: Database = field(repr=False)
    _reporter: JobReporter = field(repr=False)
    announcer: Announcer = field(repr=False)
    # Model tokens the job has used, its earlier attempts included.
    tokens_used: int = 0

    def progress(self, percent: int, stage: str, *, detail: str | None = None, tokens: int | None = None) -> None:
        """Record progress on the job; `tokens` are the job's so far."""
        if self._reporter.lost:
            raise ClaimLost(str(self.job_id))
        self._reporter.report(Progress(percent, stage, detail, tokens))

    def cancel_requested(self) -> bool:
        if self._reporter.lost:
            raise ClaimLost(str(self.job_id))
        return self._reporter.cancel_requested

    def charge(self, usage: Mapping[str, Mapping[str, int]]) -> None:
        """Add the model tokens this attempt used to the job's."""
        if usage:
            with self.db.transaction() as session:
                self.tokens_used = lifecycle.charge_usage(session, self.job_id, usage)


def run_job(task: Task, job_id: str, work: Callable[[JobContext], JobOutcome],
            transient: tuple[type[BaseException], ...], *,
            refuse: Callable[[Settings], DomainError | None] | None = None) -> None:
    """Run `work` for this delivery unless another delivery owns the job or it has finished.

    `refuse`, when given, is asked first: a refusal it returns (billing not configured) ends the
    claimed job failed with that error, said in one log line, without an attempt at the work.
    """
    settings, db = settings_of(task.app), database_of(task.app)
    logcontext.job_id.set(job_id)
    worker = f"{task.request.hostname or 'worker'}:{os.getpid()}"
    try:
        claim, context = _claim(task, db, settings, uuid.UUID(job_id), worker)
    except OperationalError as error:
        # The database is away (a restart, a failover): this delivery comes back later instead of
        # being acknowledged with the job left queued for the reaper.
        delay = backoff_seconds(settings, task.request.retries + 1)
        logger.warning("job %s: database unavailable (%s); trying again in %.1f s", job_id, type(error).__name__,
                       delay)
        raise task.retry(countdown=delay, max_retries=None) from None
    if not isinstance(claim, Claim):
        if claim.ended is not None:
            # The refusal itself finished the job (a pending cancel, no attempt left); it has committed.
            logger.info("job %s: %s without running", job_id, claim.ended.status)
            announce_ended(events_of(task.app), claim.ended)
            return
        if claim.finished:
            logger.info("job %s: nothing to do, it has finished", job_id)
            return
        logger.info("job %s is running elsewhere; checking again in %.1f s", job_id, claim.retry_in)
        raise task.retry(countdown=claim.retry_in, max_retries=None)

    announcer, reporter = context.announcer, context._reporter
    refusal = refuse(settings) if refuse else None
    if refusal is not None:
        logger.info("job %s not run: %s", job_id, refusal)
        _end(db, claim, announcer, status=JobStatus.FAILED, error=refusal)
        return
    logger.info("job %s: attempt %s of %s on %s", job_id, claim.attempt, claim.max_attempts, worker)
    announcer.started(claim.attempt, claim.max_attempts)
    reporter.start()
    try:
        try:
            outcome = work(context)
        finally:
            # Stopped before the job's end is written, so no progress write can compete with it.
            reporter.stop()
    except JobCanceled:
        _end(db, claim, announcer, status=JobStatus.CANCELED)
    except ClaimLost:
        logger.warning("job %s: lease lost to another delivery; stopping without writing", job_id)
    except SoftTimeLimitExceeded as error:
        _end(db, claim, announcer, status=JobStatus.FAILED, error=error, error_type="TimeLimitExceeded")
    except JobFailed as failure:
        logger.warning("job %s failed: %s: %s", job_id, failure.error_type, failure)
        _end(db, claim, announcer, status=JobStatus.FAILED, error=failure, error_type=failure.error_type,
             details=failure.details)
    except transient as error:
        _retry_or_fail(task, db, settings, claim, announcer, error)
    except DomainError as error:
        # An expected refusal (billing not configured, a project over its limits): no traceback.
        logger.warning("job %s failed: %s", job_id, error)
        _end(db, claim, announcer, status=JobStatus.FAILED, error=error)
    except Exception as error:  # noqa: BLE001 - any other failure is permanent and recorded on the job
        logger.exception("job %s failed", job_id)
        _end(db, claim, announcer, status=JobStatus.FAILED, error=error)
    else:
        try:
            _succeed(db, claim, announcer, outcome)
        except transient as error:
            # Storing the result hit a transient failure (a deadlock, a lost connection): the
            # work is redone on the next attempt rather than left running until the reaper.
            _retry_or_fail(task, db, settings, claim, announcer, error)
        except Exception as error:  # noqa: BLE001 - a result that cannot be stored must not leave the job running
            logger.exception("job %s: its result could not be stored", job_id)
            _end(db, claim, announcer, status=JobStatus.FAILED, error=error, error_type="ResultRejected")


def _claim(task: Task, db: Database, settings: Settings, job_id: uuid.UUID,
           worker: str) -> tuple[Claim | lifecycle.ClaimRefused, JobContext | None]:
    """Claim the job for this delivery and build what its work sees (committed before any work starts)."""
    with db.transaction() as session:
        claim = lifecycle.claim_job(session, job_id, worker, settings.job_lease_seconds)
        if not isinstance(claim, Claim):
            return claim, None
        job = session.get(Job, claim.job_id)
        announcer = Announcer(events_of(task.app), job.owner_id, job.id)
        reporter = JobReporter(db, claim, settings.job_lease_seconds, announcer)
        return claim, JobContext(job.id, job.owner_id, job.project_id, job.kind, dict(job.payload), claim.attempt,
                                 settings, db, reporter, announcer, tokens_used=job.tokens_used)


def _succeed(db: Database, claim: Claim, announcer: Announcer, outcome: JobOutcome) -> None:
    try:
        with db.transaction() as session:
            job = lifecycle.lock_claimed(session, claim)
            if job is None:
                return
            if job.cancel_requested_at is not None:
                ended = lifecycle.finish(session, claim, status=JobStatus.CANCELED)
                status = JobStatus.CANCELED
            else:
                if outcome.apply:
                    outcome.apply(session, job)
                ended = lifecycle.finish(session, claim, status=JobStatus.SUCCEEDED, result=outcome.result)
                status = JobStatus.SUCCEEDED
    except DomainError as error:
        # The result could not be stored (the project was deleted or would exceed its limits).
        _end(db, claim, announcer, status=JobStatus.FAILED, error=error, error_type="ResultRejected")
        return
    if ended:
        files = outcome.result.get("files") if status == JobStatus.SUCCEEDED else None
        announcer.finished(status, files=len(files) if files is not None else None)


def _retry_or_fail(task: Task, db: Database, settings: Settings, claim: Claim, announcer: Announcer,
                   error: BaseException) -> None:
    if claim.attempt >= claim.max_attempts:
        logger.warning("job %s: %s on the last attempt; giving up", claim.job_id, type(error).__name__)
        _end(db, claim, announcer, status=JobStatus.FAILED, error=error)
        return
    # A service that said when to come back (a 429's Retry-After) is not asked sooner.
    delay = backoff_seconds(settings, claim.attempt, getattr(error, "retry_after", None))
    logger.warning("job %s: %s; retrying in %.1f s", claim.job_id, type(error).__name__, delay)
    with db.transaction() as session:
        scheduled = lifecycle.schedule_retry(session, claim, error, delay)
    if scheduled:
        announcer.retrying(claim.attempt, utcnow() + timedelta(seconds=delay), type(error).__name__)
    raise task.retry(countdown=delay, max_retries=None, exc=error)


def _end(db: Database, claim: Claim, announcer: Announcer, **how: Any) -> None:
    with db.transaction() as session:
        ended = lifecycle.finish(session, claim, **how)
    if ended:
        error = how.get("error")
        error_type = how.get("error_type") or (type(error).__name__ if error else None)
        announcer.finished(how["status"], error_type=error_type, error_message=str(error) if error else None)
