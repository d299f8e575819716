"""Celery configuration shared by the worker and by the web app's task producer."""
from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange
from kombu import Queue as KombuQueue

from shared.jobs.kinds import TASK_QUEUES, Queue
from shared.settings import Settings

# Plain strings from here on: kombu and the broker need no enum.
QUEUES = tuple(str(queue) for queue in Queue)
TASK_ROUTES = {str(task): {"queue": str(queue)} for task, queue in TASK_QUEUES.items()}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting, lowercase and explicit (old uppercase names are silently ignored)."""
    timeout = settings.broker_timeout_seconds
    transport = {
        "visibility_timeout": settings.broker_visibility_timeout,
        # Bounded so a hung broker fails a web request in about a second instead of minutes.
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "max_retries": 1,
    }
    return {
        "broker_url": settings.resolved_broker_url,
        "broker_transport_options": transport,
        "broker_connection_timeout": timeout,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # Job state lives in the database; nothing reads Celery results.
        "task_ignore_result": True,
        "result_backend": None,
        "task_queues": [KombuQueue(name, Exchange(name), routing_key=name) for name in QUEUES],
        "task_default_queue": str(Queue.DEFAULT),
        "task_default_exchange": str(Queue.DEFAULT),
        "task_default_routing_key": str(Queue.DEFAULT),
        "task_routes": TASK_ROUTES,
        # Our tasks are idempotent (a job row is claimed before work starts), so a
        # message is acknowledged only after the work and requeued if its worker dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_prefetch_multiplier": 1,
        # High: replacing a pool child stalls its queue for a moment (seen as 2-3 s tail
        # latency at webhook rates with 200); the memory cap below guards against leaks.
        "worker_max_tasks_per_child": 10000,
        "worker_max_memory_per_child": 512_000,
        "worker_eta_task_limit": 1000,
        "worker_soft_shutdown_timeout": 10.0,
        "task_soft_time_limit": settings.job_soft_time_limit_seconds,
        "task_time_limit": settings.job_hard_time_limit_seconds,
        "task_track_started": False,
        # Workers send events for Flower; "sent" events are off because each would be a
        # second broker write on the web's submission path.
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_max_loop_interval": 30,
    }


def make_producer(settings: Settings) -> Celery:
    """A Celery app that only sends tasks by name; building it opens no connection."""
    app = Celery("devora-producer")
    app.conf.update(celery_config(settings))
    return app


def send(producer: Celery, task_name: str, *args: Any, **options: Any) -> None:
    """Send one task; raises kombu's OperationalError after about a second if the broker is down."""
    producer.send_task(str(task_name), args=args, retry=True,
                       retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                     "interval_max": 0.2}, **options)
