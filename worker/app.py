"""Builds the Celery app from the same settings as the web app."""
from __future__ import annotations

from celery import Celery

from beat_schedule import BEAT_SCHEDULE
from shared.settings import Settings, load_settings

TASK_MODULES: list[str] = []


def create_celery(settings: Settings | None = None) -> Celery:
    """A Celery app configured from `settings`; building it opens no connection."""
    settings = settings or load_settings()
    app = Celery("devora", include=TASK_MODULES)
    app.conf.update(
        broker_url=settings.resolved_broker_url,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        beat_schedule=BEAT_SCHEDULE,
        timezone="UTC",
        enable_utc=True,
    )
    app.conf.devora_settings = settings
    return app
