"""Handing a request's committed rows to the broker, and telling the owner's watchers."""
from __future__ import annotations

from typing import Any

from shared.jobs.announce import Announcer
from shared.jobs.outbox import JOBS, Outbox
from shared.models import Job
from web.state import state


def enqueue(row: Any, outbox: Outbox = JOBS, *, marked: bool = False) -> bool:
    """Send the task for a committed row (`marked`: committed already marked sent); if the broker refuses,
    the row waits in the outbox for the sweep."""
    return outbox.hand_over_all(state().producer, state().db, [outbox.dispatch(row)], marked=marked) == 1


def announcer(job: Job) -> Announcer:
    """The events of `job`, for its owner's live stream; use once the change has committed."""
    return Announcer(state().events, job.owner_id, job.id)


def enqueue_new_job(job: Job) -> None:
    """Hand a committed requeued job to the broker and announce it as queued."""
    enqueue(job)
    announcer(job).queued(job.kind)


def enqueue_submitted(job: Job) -> None:
    """Hand a job just submitted (committed marked sent) to the broker and announce it as queued."""
    enqueue(job, marked=True)
    announcer(job).queued(job.kind)
