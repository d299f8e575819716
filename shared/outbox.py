"""Handing a committed row's task to the broker, and recording that the broker has it."""
from __future__ import annotations

import uuid
from collections.abc import Callable

from celery import Celery
from sqlalchemy.orm import Session

from shared import jobs
from shared.db import Database
from shared.taskqueue import send


def hand_over(producer: Celery, db: Database, task_name: str, row_id: uuid.UUID,
              mark_sent: Callable[[Session, uuid.UUID], None] = jobs.mark_sent) -> None:
    """Send the row's task, then mark the row sent; raises if the broker refuses (the row stays unsent)."""
    send(producer, task_name, str(row_id))
    with db.transaction() as session:
        mark_sent(session, row_id)
