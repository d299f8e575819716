"""Stripe webhook events: processing, the outbox of unsent ones, and the sweep for missed ones."""
from __future__ import annotations

import logging
import uuid

from celery import shared_task

from shared import webhooks
from shared.jobs.kinds import TaskName
from shared.jobs.outbox import WEBHOOK_EVENTS
from worker.context import database_of, gateway_of, settings_of

logger = logging.getLogger(__name__)


@shared_task(name=TaskName.WEBHOOKS_PROCESS_STRIPE_EVENT, bind=True)
def process_stripe_event(self, event_row_id: str) -> None:
    """Apply one stored event exactly once; transient failures retry with backoff, then fail visibly."""
    retry_in = webhooks.process(database_of(self.app), gateway_of(self.app), settings_of(self.app),
                                uuid.UUID(event_row_id))
    if retry_in is not None:
        raise self.retry(countdown=retry_in, max_retries=None)


@shared_task(name=TaskName.WEBHOOKS_ENQUEUE_UNPROCESSED, bind=True)
def enqueue_unprocessed(self) -> int:
    """Send stored events the broker never received (it was down when they arrived)."""
    sent = WEBHOOK_EVENTS.sweep(self.app, database_of(self.app), settings_of(self.app))
    if sent:
        logger.info("enqueued %s unprocessed webhook event(s)", sent)
    return sent


@shared_task(name=TaskName.WEBHOOKS_SWEEP_MISSED, bind=True)
def sweep_missed(self) -> int:
    """Fetch recent events from Stripe and process those that never reached us."""
    if not settings_of(self.app).billing_enabled:
        logger.info("sweep: billing is not configured (STRIPE_API_KEY is not set); nothing to fetch")
        return 0
    db = database_of(self.app)
    stored = webhooks.store_missed(db, gateway_of(self.app), settings_of(self.app))
    WEBHOOK_EVENTS.hand_over_all(self.app, db, [WEBHOOK_EVENTS.dispatch(row) for row in stored], marked=True)
    if stored:
        logger.warning("sweep: %s event(s) had never arrived by webhook", len(stored))
    return len(stored)
