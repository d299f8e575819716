"""Periodic jobs as plain data keyed by task name; run exactly one beat.

Every entry expires before its next run, so a backlog never piles up duplicates.
"""
from __future__ import annotations

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict] = {
    "maintenance.requeue_unsent_jobs": {
        "task": "maintenance.requeue_unsent_jobs", "schedule": 15.0, "options": {"expires": 14},
    },
    "maintenance.reap_stuck_jobs": {
        "task": "maintenance.reap_stuck_jobs", "schedule": 60.0, "options": {"expires": 55},
    },
    "maintenance.purge_idempotency_keys": {
        "task": "maintenance.purge_idempotency_keys", "schedule": crontab(minute=17), "options": {"expires": 3000},
    },
    "maintenance.purge_expired_oauth_states": {
        "task": "maintenance.purge_expired_oauth_states", "schedule": 600.0, "options": {"expires": 590},
    },
    "webhooks.enqueue_unprocessed": {
        "task": "webhooks.enqueue_unprocessed", "schedule": 15.0, "options": {"expires": 14},
    },
    "webhooks.sweep_missed": {
        "task": "webhooks.sweep_missed", "schedule": crontab(minute=41), "options": {"expires": 3000},
    },
    "billing.reconcile": {
        "task": "billing.reconcile", "schedule": crontab(hour=3, minute=7), "options": {"expires": 3600},
    },
}
