"""Handing a request's committed rows to the broker."""
from __future__ import annotations

from typing import Any

from shared.jobs.outbox import JOBS, Outbox
from web.state import state


def enqueue(row: Any, outbox: Outbox = JOBS) -> bool:
    """Send the task for a committed row; if the broker refuses, the row waits in the outbox for the sweep."""
    return outbox.hand_over_all(state().producer, state().db, [outbox.dispatch(row)]) == 1
