"""Handing committed jobs to the broker."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

from shared.jobs import mark_sent
from shared.outbox import hand_over
from web.state import state

logger = logging.getLogger(__name__)


def enqueue(row_id: uuid.UUID, task_name: str,
            mark_sent: Callable[[Session, uuid.UUID], None] = mark_sent) -> bool:
    """Send the task for a committed row; if that fails the row waits in the outbox for the sweep."""
    try:
        hand_over(state().producer, state().db, task_name, row_id, mark_sent)
    except Exception as error:  # noqa: BLE001 - whatever the broker failure, the accepted work must survive
        logger.warning("broker unavailable, %s stays queued for the outbox sweep: %s", row_id,
                       type(error).__name__)
        return False
    return True
