"""Housekeeping of job records: the outbox, stuck jobs and expired idempotency keys."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared.models import IdempotencyKey, Job


def unsent_jobs(session: Session, *, now: datetime, grace_seconds: float, limit: int = 500) -> list[tuple[uuid.UUID, str]]:
    """Queued jobs the broker never accepted, older than the grace that covers a send in flight."""
    rows = session.execute(
        select(Job.id, Job.task_name)
        .where(Job.status == "queued", Job.sent_at.is_(None), Job.created_at <= now - timedelta(seconds=grace_seconds))
        .order_by(Job.created_at).limit(limit)
    ).all()
    return [(row.id, row.task_name) for row in rows]


def reap_stuck_jobs(session: Session, *, now: datetime, hard_limit_seconds: float,
                    grace_seconds: float, lost_message_seconds: float) -> tuple[int, int]:
    """Deal with jobs nobody is working on; returns (requeued, failed).

    A running job whose lease ran out lost its worker: past the hard time limit it
    fails, otherwise it goes back to the outbox for another attempt. A retrying job
    whose retry message never arrived goes back to the outbox too, and so does a queued
    job sent longer ago than any broker would hold a message (it was lost).
    """
    cutoff = now - timedelta(seconds=grace_seconds)
    failed = session.execute(
        update(Job)
        .where(Job.status == "running", Job.lease_expires_at < cutoff,
               Job.started_at < now - timedelta(seconds=hard_limit_seconds))
        .values(status="failed", finished_at=now, claim_token=None, lease_expires_at=None, progress_stage="failed",
                error_type="TimeLimitExceeded",
                error_message=f"the job was still running after the {int(hard_limit_seconds)} s hard time limit")
    ).rowcount
    requeue = {"status": "queued", "sent_at": None, "claim_token": None, "lease_expires_at": None,
               "next_retry_at": None, "progress_stage": "queued"}
    lost = session.execute(
        update(Job).where(Job.status == "running", Job.lease_expires_at < cutoff).values(**requeue)
    ).rowcount
    late = session.execute(
        update(Job).where(Job.status == "retrying", Job.next_retry_at < cutoff).values(**requeue)
    ).rowcount
    unreceived = session.execute(
        update(Job).where(Job.status == "queued", Job.sent_at < now - timedelta(seconds=lost_message_seconds))
        .values(sent_at=None)
    ).rowcount
    return lost + late + unreceived, failed


def purge_expired_idempotency_keys(session: Session, *, now: datetime) -> int:
    return session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now)).rowcount
