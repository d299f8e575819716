"""Handing committed jobs to the broker."""
from __future__ import annotations

import logging
import uuid

from shared.jobs import mark_sent
from shared.taskqueue import send
from web.state import state

logger = logging.getLogger(__name__)


def enqueue(job_id: uuid.UUID, task_name: str) -> bool:
    """Send the job's task after its row is committed; if that fails the job waits in the outbox."""
    try:
        send(state().producer, task_name, str(job_id))
    except Exception as error:  # noqa: BLE001 - whatever the broker failure, the accepted job must survive
        logger.warning("broker unavailable, job %s stays queued for the outbox sweep: %s", job_id,
                       type(error).__name__)
        return False
    with state().db.transaction() as session:
        mark_sent(session, job_id)
    return True
