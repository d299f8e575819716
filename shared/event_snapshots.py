"""Snapshot events: the current state of a user's jobs, read from the job rows.

A watcher gets these when it connects without a position, or when the position it
resumes from is no longer kept: the job row is the source of truth, so a snapshot makes
up for any events it missed.
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.events import JOB_SNAPSHOT, JobEvent
from shared.models import Job
from shared.jobs.states import FINISHED
from shared.schemas.jobs import JobOut

# At most this many jobs in one snapshot, newest first.
MAX_SNAPSHOT_JOBS = 100
# Event ids carry Redis's clock, job rows the workers'; a margin covers skew between them.
CLOCK_MARGIN = timedelta(seconds=10)


def owns_job(session: Session, owner_id: uuid.UUID, job_id: uuid.UUID) -> bool:
    return session.scalar(select(Job.id).where(Job.id == job_id, Job.owner_id == owner_id)) is not None


def snapshot_events(session: Session, owner_id: uuid.UUID, *, job_id: uuid.UUID | None = None,
                    changed_since_ms: int | None = None) -> list[JobEvent]:
    """One `job.snapshot` per job the watcher needs, oldest change first.

    With `job_id`: that job, whatever its state. Otherwise the owner's unfinished jobs,
    plus those changed since `changed_since_ms` (what the watcher last knew), so a job
    that ended while it was away is reported too.
    """
    conditions = [Job.owner_id == owner_id]
    if job_id is not None:
        conditions.append(Job.id == job_id)
    else:
        wanted = Job.status.not_in(FINISHED)
        if changed_since_ms is not None:
            since = datetime.fromtimestamp(changed_since_ms / 1000, UTC) - CLOCK_MARGIN
            wanted = or_(wanted, Job.updated_at >= since)
        conditions.append(wanted)
    rows = session.scalars(select(Job).where(*conditions).order_by(Job.updated_at.desc(), Job.id)
                           .limit(MAX_SNAPSHOT_JOBS)).all()
    return [JobEvent(type=JOB_SNAPSHOT, job_id=str(job.id), at=_iso(job.updated_at),
                     payload=JobOut.of(job).model_dump(mode="json"))
            for job in reversed(rows)]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
