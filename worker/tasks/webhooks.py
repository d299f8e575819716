"""Stripe webhook events: processing, the outbox of unsent ones, and the sweep for missed ones."""
from __future__ import annotations

import json
import logging
import time
import uuid

from celery import shared_task
from sqlalchemy.exc import OperationalError

from shared import webhooks
from shared.integrations.stripe_gateway import StripeTransient
from shared.models.base import utcnow
from shared.outbox import hand_over
from worker.context import database_of, gateway_of, settings_of
from worker.jobrunner import backoff_seconds

logger = logging.getLogger(__name__)
TASK = "webhooks.process_stripe_event"
TRANSIENT = (StripeTransient, OperationalError)


@shared_task(name=TASK, bind=True)
def process_stripe_event(self, event_row_id: str) -> None:
    """Apply one stored event exactly once; transient failures retry with backoff, then fail visibly."""
    settings, db, gateway = settings_of(self.app), database_of(self.app), gateway_of(self.app)
    row_id = uuid.UUID(event_row_id)
    try:
        # Claim, apply and mark done in one transaction: a concurrent delivery finds it
        # taken, and a crash rolls all of it back for the redelivery.
        with db.transaction() as session:
            row = webhooks.claim(session, row_id)
            if row is None:
                return
            status, summary = webhooks.apply(session, row, gateway, settings)
            row.status, row.summary, row.processed_at = status, summary, utcnow()
            row.error_type = row.error_message = row.next_retry_at = None
        logger.info("webhook %s (%s): %s", row.stripe_event_id, row.type, status)
    except TRANSIENT as error:
        with db.transaction() as session:
            delay = webhooks.record_failure(session, row_id, error, max_attempts=settings.webhook_max_attempts,
                                            delay_for=lambda attempt: backoff_seconds(settings, attempt))
        if delay is None:
            logger.error("webhook event %s failed on its last attempt: %s", row_id, type(error).__name__)
            return
        logger.warning("webhook event %s: %s; retrying in %.1f s", row_id, type(error).__name__, delay)
        raise self.retry(countdown=delay, max_retries=None, exc=error)
    except Exception as error:  # noqa: BLE001 - a permanent failure is recorded and can be replayed
        logger.exception("webhook event %s failed", row_id)
        with db.transaction() as session:
            webhooks.record_failure(session, row_id, error, max_attempts=0, delay_for=lambda attempt: 0.0)


@shared_task(name="webhooks.enqueue_unprocessed", bind=True)
def enqueue_unprocessed(self) -> int:
    """Send stored events the broker never received (it was down when they arrived)."""
    settings, db = settings_of(self.app), database_of(self.app)
    with db.transaction() as session:
        pending = webhooks.unsent_events(session, now=utcnow(), grace_seconds=settings.outbox_grace_seconds)
    for row_id in pending:
        hand_over(self.app, db, TASK, row_id, webhooks.mark_sent)
    if pending:
        logger.info("enqueued %s unprocessed webhook event(s)", len(pending))
    return len(pending)


@shared_task(name="webhooks.sweep_missed", bind=True)
def sweep_missed(self) -> int:
    """Fetch recent events from Stripe and process those that never reached us."""
    settings, db, gateway = settings_of(self.app), database_of(self.app), gateway_of(self.app)
    events = gateway.list_events(created_gte=int(time.time()) - settings.webhook_sweep_lookback_seconds)
    with db.transaction() as session:
        known = webhooks.stored_ids(session, [event.id for event in events])
    stored = []
    with db.transaction() as session:
        for event in events:
            if event.id in known:
                continue
            row = webhooks.store(session, event_id=event.id, event_type=event.type, created=int(event.created),
                                 livemode=bool(event.livemode), payload=json.dumps(event.to_dict()).encode())
            if row is not None:
                stored.append(row.id)
    for row_id in stored:
        hand_over(self.app, db, TASK, row_id, webhooks.mark_sent)
    if stored:
        logger.warning("sweep: %s event(s) had never arrived by webhook", len(stored))
    return len(stored)
