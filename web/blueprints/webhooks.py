"""Stripe webhooks: verified, stored once, acknowledged at once, processed by a worker."""
from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag

from shared import webhooks
from shared.errors import DomainError
from shared.integrations.stripe_gateway import (
    WebhookPayloadInvalid, WebhookSignatureInvalid, WebhooksNotConfigured,
)
from shared.jobs.outbox import WEBHOOK_EVENTS
from shared.schemas.billing import STRIPE_EVENT_EXAMPLE, StripeSignatureHeader, WebhookAck
from web.dispatch import enqueue
from web.metrics import WEBHOOKS_RECEIVED
from web.openapi import responses
from web.problems import problem, refuse_invalid_requests
from web.state import state

bp = APIBlueprint("webhooks", __name__, url_prefix="/api/v2/webhooks", abp_tags=[Tag(name="webhooks")])
_BODY = {"description": "The event exactly as Stripe sent it, signed in the Stripe-Signature header",
         "required": True, "content": {"application/json": {"schema": {"type": "object"},
                                                            "example": STRIPE_EVENT_EXAMPLE}}}


class BadWebhook(DomainError):
    status, title, type_slug = 400, "Webhook rejected", "webhook-rejected"


def _unsigned(errors: list[dict[str, Any]], detail: str) -> Response:
    # The signature header is the only declared input: without a usable one the delivery cannot be
    # verified, and is refused as every other such delivery is, with a 400 and nothing stored.
    WEBHOOKS_RECEIVED.labels("unverified", "rejected").inc()
    return problem(BadWebhook.status, BadWebhook.title, f"Webhook signature rejected: {detail}",
                   slug=BadWebhook.type_slug, errors=errors)


@bp.post("/stripe", responses=responses({200: WebhookAck}, 400, 503), openapi_extensions={"requestBody": _BODY})
def stripe_webhook(header: StripeSignatureHeader):
    """Receive a Stripe event: 400 unless its signature verifies, 503 without a webhook secret (nothing stored)."""
    if not state().settings.stripe_webhook_secret.get_secret_value():
        raise WebhooksNotConfigured()
    payload = request.get_data(cache=False)
    try:
        event = state().gateway.construct_event(payload, header.stripe_signature)
    except WebhookSignatureInvalid as error:
        WEBHOOKS_RECEIVED.labels("unverified", "rejected").inc()
        raise BadWebhook(str(error)) from None
    except WebhookPayloadInvalid as error:
        WEBHOOKS_RECEIVED.labels("malformed", "rejected").inc()
        raise BadWebhook(str(error), errors=error.errors) from None
    try:
        received = webhooks.receive(state().db, state().redis, event, payload,
                                    marker_ttl_seconds=state().settings.webhook_dedup_ttl_seconds)
    except WebhookPayloadInvalid as error:
        WEBHOOKS_RECEIVED.labels(event.type, "rejected").inc()
        raise BadWebhook(str(error), errors=error.errors) from None
    WEBHOOKS_RECEIVED.labels(event.type, "duplicate" if received.duplicate else "stored").inc()
    if not received.duplicate:
        enqueue(received, WEBHOOK_EVENTS, marked=True)
    return WebhookAck(received=True, duplicate=received.duplicate).model_dump()


refuse_invalid_requests(f"{bp.name}.{stripe_webhook.__name__}", _unsigned)
