"""Stripe webhooks: verified, stored once, acknowledged at once, processed by a worker."""
from __future__ import annotations

import logging

from flask import request
from flask_openapi3 import APIBlueprint, Tag
from redis.exceptions import RedisError

from shared import webhooks
from shared.errors import DomainError
from shared.integrations.stripe_gateway import WebhookPayloadInvalid, WebhookSignatureInvalid
from shared.schemas.billing import STRIPE_EVENT_EXAMPLE, WebhookAck
from web.dispatch import enqueue
from web.metrics import WEBHOOKS_RECEIVED
from web.openapi import responses
from web.state import db_session, state

logger = logging.getLogger(__name__)
bp = APIBlueprint("webhooks", __name__, url_prefix="/api/v2/webhooks", abp_tags=[Tag(name="webhooks")])
TASK = "webhooks.process_stripe_event"
_BODY = {"description": "The event exactly as Stripe sent it, signed in the Stripe-Signature header",
         "required": True, "content": {"application/json": {"schema": {"type": "object"},
                                                            "example": STRIPE_EVENT_EXAMPLE}}}


class BadWebhook(DomainError):
    status, title, type_slug = 400, "Webhook rejected", "webhook-rejected"


def _marker(event_id: str) -> str:
    return f"devora:webhook:{event_id}"


def _seen(event_id: str) -> bool:
    """The Redis fast path: set only after an event was stored, so a hit is always a true duplicate."""
    try:
        return bool(state().dedup.exists(_marker(event_id)))
    except (RedisError, OSError) as error:
        logger.warning("dedup store unavailable, relying on the database: %s", type(error).__name__)
        return False


def _mark(event_id: str) -> None:
    try:
        state().dedup.set(_marker(event_id), "1", nx=True, ex=state().settings.webhook_dedup_ttl_seconds)
    except (RedisError, OSError) as error:
        logger.warning("dedup store unavailable, event %s not marked: %s", event_id, type(error).__name__)


@bp.post("/stripe", responses=responses({200: WebhookAck}, 400), openapi_extensions={"requestBody": _BODY})
def stripe_webhook():
    """Receive a Stripe event: 400 (nothing stored) unless its signature verifies."""
    payload = request.get_data(cache=False)
    try:
        event = state().gateway.construct_event(payload, request.headers.get("Stripe-Signature"))
    except (WebhookSignatureInvalid, WebhookPayloadInvalid) as error:
        WEBHOOKS_RECEIVED.labels("unverified", "rejected").inc()
        raise BadWebhook(str(error)) from None
    if _seen(event.id):
        WEBHOOKS_RECEIVED.labels(event.type, "duplicate").inc()
        return {"received": True, "duplicate": True}
    session = db_session()
    row = webhooks.store(session, event_id=event.id, event_type=event.type, created=int(event.created),
                         livemode=bool(event.livemode), payload=payload)
    session.commit()
    _mark(event.id)
    if row is None:
        WEBHOOKS_RECEIVED.labels(event.type, "duplicate").inc()
        return {"received": True, "duplicate": True}
    WEBHOOKS_RECEIVED.labels(event.type, "stored").inc()
    enqueue(row.id, TASK, mark_sent=webhooks.mark_sent)
    return {"received": True, "duplicate": False}
