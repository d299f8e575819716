"""Worker process hooks: logging, per-task log ids."""
from __future__ import annotations

import logging

from celery.signals import setup_logging, task_postrun, task_prerun

from shared import logcontext
from shared.jobs.kinds import QUIET_TASKS
from shared.logging_setup import configure_logging
from shared.settings import load_settings


@setup_logging.connect
def _json_logging(**_kwargs) -> None:
    # Connecting this signal stops Celery from installing its own handlers.
    configure_logging(load_settings())
    for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
        logging.getLogger(name).addFilter(_quiet_housekeeping)


def _quiet_housekeeping(record: logging.LogRecord) -> bool:
    """Drop the routine received/succeeded/sent lines of housekeeping tasks.

    They run every few seconds and log a line of their own only when they did something;
    their failures still pass, being warnings or errors.
    """
    if record.levelno > logging.INFO:
        return True
    data = getattr(record, "data", None)
    name = data.get("name") if isinstance(data, dict) else None
    if name is None and record.name == "celery.beat" and isinstance(record.args, tuple) and len(record.args) == 2:
        name = record.args[1]  # "Scheduler: Sending due task %s (%s)"
    return name not in QUIET_TASKS


@task_prerun.connect
def _bind_task_id(task_id=None, **_kwargs) -> None:
    logcontext.task_id.set(task_id)


@task_postrun.connect
def _unbind_task_id(**_kwargs) -> None:
    logcontext.task_id.set(None)
    logcontext.job_id.set(None)
