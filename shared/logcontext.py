"""Ids that every log line carries when they exist: request, user, job and task."""
from __future__ import annotations

import logging
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
user_id: ContextVar[str | None] = ContextVar("user_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)
task_id: ContextVar[str | None] = ContextVar("task_id", default=None)

_FIELDS = {"request_id": request_id, "user_id": user_id, "job_id": job_id, "task_id": task_id}


class ContextFilter(logging.Filter):
    """Copies the current ids onto each record (absent ones are left out of the line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _FIELDS.items():
            value = var.get()
            if value is not None:
                setattr(record, name, value)
        return True
