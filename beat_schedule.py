"""Periodic jobs as plain data keyed by task name; run exactly one beat.

Every entry expires before its next run, so a backlog never piles up duplicates.
"""
from __future__ import annotations

from celery.schedules import crontab

from shared.jobs.kinds import TaskName


def _every(task: TaskName, schedule, expires: float) -> tuple[str, dict]:
    return str(task), {"task": str(task), "schedule": schedule, "options": {"expires": expires}}


BEAT_SCHEDULE: dict[str, dict] = dict([
    _every(TaskName.MAINTENANCE_REQUEUE_UNSENT_JOBS, 15.0, expires=14),
    _every(TaskName.MAINTENANCE_REAP_STUCK_JOBS, 60.0, expires=55),
    _every(TaskName.MAINTENANCE_PURGE_IDEMPOTENCY_KEYS, crontab(minute=17), expires=3000),
    _every(TaskName.MAINTENANCE_PURGE_EXPIRED_OAUTH_STATES, 600.0, expires=590),
    _every(TaskName.WEBHOOKS_ENQUEUE_UNPROCESSED, 15.0, expires=14),
    _every(TaskName.WEBHOOKS_SWEEP_MISSED, crontab(minute=41), expires=3000),
    _every(TaskName.BILLING_RECONCILE, crontab(hour=3, minute=7), expires=3600),
])
