"""Noticing that the broker's Redis lost its data, and putting everything it held back in the outbox.

A Redis restarted without persistence, or a failover to an empty replica, drops every queued
message and every unacknowledged one. The database still knows what was accepted, but the
normal sweeps would only notice after the visibility timeout. So a sentinel key lives beside
the queues: when it is missing, the data is gone, and every job and event waiting for a worker
is sent again at once. Processing claims each row, so a message that did survive only meets a
row that is already taken or done.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from redis import Redis
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.jobs.lifecycle import Ended, requeued
from shared.jobs.states import WEBHOOK_PENDING, JobStatus, WebhookStatus
from shared.models import Job, WebhookEvent

logger = logging.getLogger(__name__)
SENTINEL_KEY = "devora:broker:sentinel"


def broker_lost_data(broker: Redis) -> bool:
    """True, to exactly one caller, when the sentinel is missing: the broker's data is gone.

    The first check against a brand-new Redis reads as a loss too; sending the few waiting
    rows once more is harmless.
    """
    return bool(broker.set(SENTINEL_KEY, uuid.uuid4().hex, nx=True))


@dataclass(frozen=True)
class Returned:
    """What went back in the outbox: retrying jobs now queued (their watchers are told once it commits),
    and how many jobs and events in all."""

    requeued: list[Ended]
    jobs: int
    events: int


def return_everything_waiting(session: Session) -> Returned:
    """Put every job and event that waits for a worker back in the outbox.

    A retrying job's delayed message was lost as well, so it is queued again without waiting
    out its backoff; a running job keeps its lease (its worker may still be alive) and is
    reaped as usual if not.
    """
    retrying = session.execute(
        update(Job).where(Job.status == JobStatus.RETRYING).values(**requeued(fresh=False))
        .returning(Job.id, Job.owner_id, Job.kind).execution_options(synchronize_session=False)).all()
    queued = session.execute(update(Job).where(Job.status == JobStatus.QUEUED)
                             .values(**requeued(fresh=False))).rowcount
    events = session.execute(
        update(WebhookEvent).where(WebhookEvent.status.in_(WEBHOOK_PENDING))
        .values(status=WebhookStatus.RECEIVED, sent_at=None, next_retry_at=None)
    ).rowcount
    return Returned([Ended(row.id, row.owner_id, row.kind, JobStatus.QUEUED) for row in retrying],
                    len(retrying) + queued, events)
