"""The outbox: rows committed first, their task sent after, and the sweep for rows the broker never got.

Each kind of record that owes the broker a task message (jobs, stored webhook events) has one
`Outbox` that knows which task a row needs and how to mark the row sent. The web side after a
commit, every sweep, the admin replays and the CLI all hand rows over through it.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from celery import Celery
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from shared.db import Database
from shared.jobs.kinds import TaskName, task_for
from shared.jobs.states import JobStatus, WebhookStatus
from shared.models import Job, WebhookEvent
from shared.models.base import utcnow
from shared.settings import Settings
from shared.taskqueue import send

logger = logging.getLogger(__name__)
SWEEP_BATCH = 500


class Dispatch(NamedTuple):
    """One task message owed for one row."""

    task: TaskName
    row_id: uuid.UUID


@dataclass(frozen=True)
class Outbox:
    label: str
    model: type[Job] | type[WebhookEvent]
    # The columns `task_of` reads, so a sweep selects only those.
    columns: tuple[Any, ...]
    task_of: Callable[[Any], TaskName]
    # Rows to (re)send at `now`, given the grace that covers a send still in flight and the age
    # after which a message nobody picked up counts as lost.
    due: Callable[[datetime, float, float], ColumnElement[bool]]
    # When a row arrived: the oldest are sent first.
    arrived: Any

    def dispatch(self, row: Any) -> Dispatch:
        return Dispatch(self.task_of(row), row.id)

    def mark_sent(self, session: Session, row_id: uuid.UUID) -> None:
        session.execute(update(self.model).where(self.model.id == row_id).values(sent_at=utcnow()))

    def hand_over(self, producer: Celery, db: Database, dispatch: Dispatch) -> None:
        """Send the row's task, then mark the row sent; raises if the broker refuses (the row stays unsent)."""
        send(producer, dispatch.task, str(dispatch.row_id))
        with db.transaction() as session:
            self.mark_sent(session, dispatch.row_id)

    def hand_over_marked(self, producer: Celery, db: Database, dispatch: Dispatch) -> None:
        """Send the task of a row committed already marked sent; raises if the broker refuses, once the
        mark is taken back so that the sweep sends the row.

        A new row is marked in the transaction that creates it, which saves a second commit (on SQLite
        the two commits were most of a submission's cost). If even taking the mark back fails, the row
        still counts as sent; the reaper's lost-message rule resends it after OUTBOX_RESEND_AFTER_SECONDS.
        """
        try:
            send(producer, dispatch.task, str(dispatch.row_id))
        except Exception:
            self._unmark(db, [dispatch.row_id])
            raise

    def hand_over_all(self, producer: Celery, db: Database, dispatches: Iterable[Dispatch], *,
                      marked: bool = False) -> int:
        """Hand over each row in turn (`marked`: rows committed already marked sent); at the first broker
        failure the rest wait for the sweep."""
        dispatches = list(dispatches)
        for sent, dispatch in enumerate(dispatches):
            try:
                if marked:
                    self.hand_over_marked(producer, db, dispatch)
                else:
                    self.hand_over(producer, db, dispatch)
            except Exception as error:  # noqa: BLE001 - whatever the broker failure, the rows stay in the outbox
                # Each failed send waits for the broker's timeout, so one failure stops the batch.
                left = len(dispatches) - sent
                if marked:
                    # Taken back from the broker so the sweep finds them (the first already was).
                    self._unmark(db, [d.row_id for d in dispatches[sent + 1:]])
                if left == 1:
                    logger.warning("broker unavailable, %s %s stays queued for the outbox sweep: %s", self.label,
                                   dispatch.row_id, type(error).__name__)
                else:
                    logger.warning("broker unavailable, %d %ss stay queued for the outbox sweep: %s", left,
                                   self.label, type(error).__name__)
                return sent
        return len(dispatches)

    def _unmark(self, db: Database, row_ids: list[uuid.UUID]) -> None:
        if not row_ids:
            return
        try:
            with db.transaction() as session:
                session.execute(update(self.model).where(self.model.id.in_(row_ids)).values(sent_at=None))
        except Exception as error:  # noqa: BLE001 - the lost-message rule covers the rows
            logger.warning("could not put %d %s(s) back in the outbox (%s); they go out again after "
                           "OUTBOX_RESEND_AFTER_SECONDS", len(row_ids), self.label, type(error).__name__)

    def pending(self, session: Session, *, now: datetime, grace_seconds: float, resend_after_seconds: float,
                limit: int = SWEEP_BATCH) -> list[Dispatch]:
        rows = session.execute(select(self.model.id, *self.columns)
                               .where(self.due(now, grace_seconds, resend_after_seconds))
                               .order_by(self.arrived).limit(limit)).all()
        return [self.dispatch(row) for row in rows]

    def sweep(self, producer: Celery, db: Database, settings: Settings) -> int:
        """Send every row that is due; returns how many the broker accepted."""
        with db.transaction() as session:
            due = self.pending(session, now=utcnow(), grace_seconds=settings.outbox_grace_seconds,
                               resend_after_seconds=settings.outbox_resend_after_seconds)
        return self.hand_over_all(producer, db, due)


def _jobs_due(now: datetime, grace_seconds: float, _resend_after: float) -> ColumnElement[bool]:
    # A queued job whose message was lost is put back here by the reaper (`lifecycle.reap`).
    return (Job.status == JobStatus.QUEUED) & Job.sent_at.is_(None) & \
        (Job.created_at <= now - timedelta(seconds=grace_seconds))


def _events_due(now: datetime, grace_seconds: float, resend_after_seconds: float) -> ColumnElement[bool]:
    """Never handed to the broker, sent but not picked up for a long time (the message was lost,
    say with a killed worker), or whose retry message never came back."""
    cutoff = now - timedelta(seconds=grace_seconds)
    received = WebhookEvent.status == WebhookStatus.RECEIVED
    return or_(received & WebhookEvent.sent_at.is_(None) & (WebhookEvent.received_at <= cutoff),
               received & (WebhookEvent.sent_at < now - timedelta(seconds=resend_after_seconds)),
               (WebhookEvent.status == WebhookStatus.RETRYING)
               & (WebhookEvent.next_retry_at < cutoff - timedelta(seconds=60))
               # not resent since: one resend per missed retry, not one per sweep
               & or_(WebhookEvent.sent_at.is_(None), WebhookEvent.sent_at < WebhookEvent.next_retry_at))


JOBS = Outbox("job", Job, columns=(Job.kind,), task_of=lambda row: task_for(row.kind), due=_jobs_due,
              arrived=Job.created_at)
WEBHOOK_EVENTS = Outbox("webhook event", WebhookEvent, columns=(),
                        task_of=lambda row: TaskName.WEBHOOKS_PROCESS_STRIPE_EVENT, due=_events_due,
                        arrived=WebhookEvent.received_at)
