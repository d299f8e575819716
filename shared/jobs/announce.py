"""Job events for live watchers, each published after the change it describes has committed.

The job row stays the source of truth: an event only tells a watcher to look, or what it would
see if it did. Publishing never fails the job (the store logs and swallows Redis errors).
"""
from __future__ import annotations

import uuid
from datetime import datetime

from shared import events
from shared.events import EventStore
from shared.jobs.lifecycle import Ended, Progress
from shared.jobs.states import JobStatus

# A finished job's event names its outcome; the error text is cut to keep events small.
FINAL_EVENTS = {JobStatus.SUCCEEDED: events.JOB_SUCCEEDED, JobStatus.FAILED: events.JOB_FAILED,
                JobStatus.CANCELED: events.JOB_CANCELED}
EVENT_ERROR_CHARS = 500


class Announcer:
    """The events of one job, for its owner's stream."""

    def __init__(self, store: EventStore | None, owner_id: uuid.UUID, job_id: uuid.UUID) -> None:
        self._store, self._owner_id, self._job_id = store, owner_id, job_id

    def queued(self, kind: str) -> None:
        self._publish(events.JOB_QUEUED, {"kind": kind})

    def started(self, attempt: int, max_attempts: int) -> None:
        self._publish(events.JOB_STARTED, {"attempt": attempt, "max_attempts": max_attempts})

    def progress(self, progress: Progress) -> None:
        payload = {"percent": progress.percent, "stage": progress.stage}
        if progress.detail:
            payload["detail"] = progress.detail
        if progress.tokens is not None:
            payload["tokens"] = progress.tokens
        self._publish(events.JOB_PROGRESS, payload)

    def file(self, path: str, action: str) -> None:
        self._publish(events.JOB_FILE, {"path": path, "action": action})

    def retrying(self, attempt: int, next_retry_at: datetime, error_type: str) -> None:
        self._publish(events.JOB_RETRYING, {"attempt": attempt, "next_retry_at": next_retry_at,
                                            "error_type": error_type})

    def finished(self, status: JobStatus, *, error_type: str | None = None, error_message: str | None = None,
                 files: int | None = None) -> None:
        payload: dict = {}
        if error_type:
            payload.update(error_type=error_type, error_message=(error_message or "")[:EVENT_ERROR_CHARS])
        if files is not None:
            payload["files"] = files
        self._publish(FINAL_EVENTS[status], payload)

    def _publish(self, event_type: str, payload: dict) -> None:
        if self._store is not None:
            self._store.publish(self._owner_id, self._job_id, event_type, payload)


def announce_ended(store: EventStore | None, ended: Ended) -> None:
    """Tell the owner's watchers of a job that a bulk or refused write finished or requeued; after its commit."""
    announcer = Announcer(store, ended.owner_id, ended.job_id)
    if ended.status == JobStatus.QUEUED:
        announcer.queued(ended.kind)
    else:
        announcer.finished(ended.status, error_type=ended.error_type, error_message=ended.error_message)
