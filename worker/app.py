"""Builds the Celery app from the same settings as the web app."""
from __future__ import annotations

from celery import Celery

from beat_schedule import BEAT_SCHEDULE
from shared.settings import Settings, load_settings
from shared.taskqueue import celery_config
from worker import signals  # noqa: F401 - connects the logging and task-id hooks

TASK_MODULES = ["worker.tasks.billing", "worker.tasks.generation", "worker.tasks.maintenance",
                "worker.tasks.webhooks"]


def create_celery(settings: Settings | None = None) -> Celery:
    """A Celery app configured from `settings`; building it opens no connection."""
    settings = settings or load_settings()
    app = Celery("devora", include=TASK_MODULES, set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.beat_schedule = BEAT_SCHEDULE
    app.conf.beat_scheduler = "worker.beat:HeartbeatScheduler"
    app.conf.worker_hijack_root_logger = False
    app.conf.devora_settings = settings
    return app
