"""Worker process hooks: logging, per-task log ids."""
from __future__ import annotations

from celery.signals import setup_logging, task_postrun, task_prerun

from shared import logcontext
from shared.logging_setup import configure_logging
from shared.settings import load_settings


@setup_logging.connect
def _json_logging(**_kwargs) -> None:
    # Connecting this signal stops Celery from installing its own handlers.
    configure_logging(load_settings())


@task_prerun.connect
def _bind_task_id(task_id=None, **_kwargs) -> None:
    logcontext.task_id.set(task_id)


@task_postrun.connect
def _unbind_task_id(**_kwargs) -> None:
    logcontext.task_id.set(None)
    logcontext.job_id.set(None)
