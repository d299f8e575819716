"""Scheduled housekeeping: the job outbox, stuck jobs, expired idempotency keys and OAuth tickets."""
from __future__ import annotations

import logging

from celery import shared_task

from shared import oauth_login
from shared.jobs import lifecycle, submission
from shared.jobs.kinds import TaskName
from shared.jobs.outbox import JOBS
from shared.models.base import utcnow
from worker.context import database_of, settings_of

logger = logging.getLogger(__name__)


@shared_task(name=TaskName.MAINTENANCE_REQUEUE_UNSENT_JOBS, bind=True)
def requeue_unsent_jobs(self) -> int:
    """Send queued jobs the broker never received (it was down when they were submitted)."""
    sent = JOBS.sweep(self.app, database_of(self.app), grace_seconds=settings_of(self.app).outbox_grace_seconds)
    if sent:
        logger.info("requeued %s unsent job(s)", sent)
    return sent


@shared_task(name=TaskName.MAINTENANCE_REAP_STUCK_JOBS, bind=True)
def reap_stuck_jobs(self) -> dict[str, int]:
    """Requeue jobs whose worker vanished; fail those past the hard time limit."""
    settings, db = settings_of(self.app), database_of(self.app)
    with db.transaction() as session:
        requeued, failed = lifecycle.reap(
            session, now=utcnow(), hard_limit_seconds=settings.job_hard_time_limit_seconds,
            grace_seconds=settings.job_lease_seconds, lost_message_seconds=settings.broker_visibility_timeout)
    if requeued or failed:
        logger.warning("stuck jobs: %s requeued, %s failed", requeued, failed)
    return {"requeued": requeued, "failed": failed}


@shared_task(name=TaskName.MAINTENANCE_PURGE_IDEMPOTENCY_KEYS, bind=True)
def purge_idempotency_keys(self) -> int:
    """Forget idempotency keys older than their retention (24 hours by default)."""
    with database_of(self.app).transaction() as session:
        return submission.purge_expired_idempotency_keys(session, now=utcnow())


@shared_task(name=TaskName.MAINTENANCE_PURGE_EXPIRED_OAUTH_STATES, bind=True)
def purge_expired_oauth_states(self) -> int:
    """Delete OAuth authorization states and login codes past their expiry (used ones are gone already)."""
    with database_of(self.app).transaction() as session:
        return oauth_login.purge_expired_tickets(session, utcnow())
