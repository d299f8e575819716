"""Scheduled housekeeping: the job outbox, stuck jobs, expired idempotency keys and OAuth tickets."""
from __future__ import annotations

import logging

from celery import shared_task
from redis.exceptions import RedisError

from shared import oauth_login
from shared.jobs import lifecycle, recovery, submission
from shared.jobs.announce import announce_ended
from shared.jobs.kinds import TaskName
from shared.jobs.outbox import JOBS, WEBHOOK_EVENTS
from shared.models.base import utcnow
from worker.context import broker_redis_of, database_of, events_of, settings_of

logger = logging.getLogger(__name__)


@shared_task(name=TaskName.MAINTENANCE_REQUEUE_UNSENT_JOBS, bind=True)
def requeue_unsent_jobs(self) -> int:
    """Send queued jobs the broker never received (it was down when they were submitted, or lost its data)."""
    db, settings = database_of(self.app), settings_of(self.app)
    if _broker_lost_data(broker_redis_of(self.app), db, events_of(self.app)):
        # The events' own sweep may just have run; they go out now, not on its next turn.
        WEBHOOK_EVENTS.sweep(self.app, db, settings)
    sent = JOBS.sweep(self.app, db, settings)
    if sent:
        logger.info("requeued %s unsent job(s)", sent)
    return sent


def _broker_lost_data(broker, db, store) -> bool:
    """Whether the broker's Redis lost its data; if so everything waiting is back in the outbox."""
    if broker is None:
        return False  # RabbitMQ keeps durable queues across restarts
    try:
        lost = recovery.broker_lost_data(broker)
    except (RedisError, OSError) as error:
        logger.warning("could not check the broker for lost data: %s", type(error).__name__)
        return False
    if lost:
        with db.transaction() as session:
            returned = recovery.return_everything_waiting(session)
        for ended in returned.requeued:
            announce_ended(store, ended)
        logger.warning("the broker's data is new or was lost: %s job(s) and %s webhook event(s) go out again",
                       returned.jobs, returned.events)
    return lost


@shared_task(name=TaskName.MAINTENANCE_REAP_STUCK_JOBS, bind=True)
def reap_stuck_jobs(self) -> dict[str, int]:
    """Requeue jobs whose worker vanished; fail those past the hard time limit; tell their watchers."""
    settings, db = settings_of(self.app), database_of(self.app)
    with db.transaction() as session:
        reaped = lifecycle.reap(
            session, now=utcnow(), hard_limit_seconds=settings.job_hard_time_limit_seconds,
            grace_seconds=settings.job_lease_seconds, lost_message_seconds=settings.outbox_resend_after_seconds)
    # Committed: each change is announced now (a lost message resent changes nothing a watcher sees).
    store = events_of(self.app)
    for ended in (*reaped.failed, *reaped.requeued):
        announce_ended(store, ended)
    requeued, failed = len(reaped.requeued) + reaped.resent, len(reaped.failed)
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
