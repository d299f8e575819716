"""Stripe webhook events: storing them once, and applying each type to the billing mirror."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import billing
from shared.errors import NotFound
from shared.integrations.stripe_gateway import StripeGateway
from shared.models import WebhookEvent
from shared.models.base import utcnow
from shared.settings import Settings


def store(session: Session, *, event_id: str, event_type: str, created: int, livemode: bool,
          payload: bytes) -> WebhookEvent | None:
    """Record a verified event; None when this event id is already stored."""
    row = WebhookEvent(stripe_event_id=event_id, type=event_type, stripe_created=created, livemode=livemode,
                       payload=payload.decode("utf-8"), received_at=utcnow())
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row


Handler = Callable[[Session, dict[str, Any], int, StripeGateway, Settings], dict[str, Any]]


def apply(session: Session, row: WebhookEvent, gateway: StripeGateway, settings: Settings) -> tuple[str, dict]:
    """Apply a stored event; returns its final status (`processed` or `ignored`) and a summary."""
    event = json.loads(row.payload)
    handler = HANDLERS.get(row.type)
    if handler is None:
        return "ignored", {"reason": f"{row.type} needs no action here"}
    summary = handler(session, event["data"]["object"], row.stripe_created, gateway, settings)
    return ("ignored" if summary.get("ignored") else "processed"), summary


def _checkout_completed(session, obj, created, gateway, settings) -> dict[str, Any]:
    user_ref = obj.get("client_reference_id") or (obj.get("metadata") or {}).get("user_id")
    account = billing.account_by_customer(session, obj.get("customer"))
    if account is None and user_ref:
        account = billing.account_for(session, uuid.UUID(user_ref))
        account.stripe_customer_id = obj.get("customer")
    if account is None:
        return {"ignored": True, "reason": "checkout for an unknown customer"}
    if not obj.get("subscription"):
        return {"ignored": True, "reason": "checkout without a subscription"}
    # The session names the subscription but does not carry it: Stripe's current view is authoritative.
    subscription = gateway.retrieve_subscription(obj["subscription"]).to_dict()
    applied = billing.apply_subscription(session, account, subscription, as_of=created, settings=settings)
    return {"user_id": str(account.user_id), "subscription": subscription["id"], "applied": applied,
            "plan": account.plan, "status": account.subscription_status}


def _subscription_changed(session, obj, created, gateway, settings) -> dict[str, Any]:
    account = billing.account_by_customer(session, obj.get("customer"))
    if account is None:
        return {"ignored": True, "reason": "subscription of an unknown customer"}
    applied = billing.apply_subscription(session, account, obj, as_of=created, settings=settings)
    return {"user_id": str(account.user_id), "subscription": obj.get("id"), "applied": applied,
            "plan": account.plan, "status": account.subscription_status}


def _invoice_changed(session, obj, created, gateway, settings) -> dict[str, Any]:
    account = billing.account_by_customer(session, obj.get("customer"))
    if account is None:
        return {"ignored": True, "reason": "invoice of an unknown customer"}
    applied = billing.upsert_invoice(session, account, obj, as_of=created)
    return {"user_id": str(account.user_id), "invoice": obj.get("id"), "applied": applied, "status": obj.get("status")}


def _customer_updated(session, obj, created, gateway, settings) -> dict[str, Any]:
    account = billing.account_by_customer(session, obj.get("id"))
    if account is None:
        return {"ignored": True, "reason": "unknown customer"}
    account.customer_deleted = False
    return {"user_id": str(account.user_id), "customer": obj.get("id")}


def _customer_deleted(session, obj, created, gateway, settings) -> dict[str, Any]:
    account = billing.account_by_customer(session, obj.get("id"))
    if account is None:
        return {"ignored": True, "reason": "unknown customer"}
    account.customer_deleted = True
    if account.subscription_status in billing.ENTITLED_STATES and created >= account.subscription_watermark:
        account.subscription_status, account.plan = "canceled", "free"
        account.subscription_watermark = created
    return {"user_id": str(account.user_id), "customer": obj.get("id"), "plan": account.plan}


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _checkout_completed,
    **{f"customer.subscription.{verb}": _subscription_changed for verb in ("created", "updated", "deleted")},
    **{f"invoice.{verb}": _invoice_changed
       for verb in ("created", "finalized", "paid", "payment_succeeded", "payment_failed", "updated", "voided")},
    "customer.updated": _customer_updated,
    "customer.deleted": _customer_deleted,
}


def claim(session: Session, row_id: uuid.UUID) -> WebhookEvent | None:
    """Take a stored event for processing in this transaction; None if it is done or taken."""
    taken = session.execute(
        update(WebhookEvent).where(WebhookEvent.id == row_id, WebhookEvent.status.in_(("received", "retrying")))
        .values(status="processing", attempts=WebhookEvent.attempts + 1)
    ).rowcount
    return session.get(WebhookEvent, row_id, populate_existing=True) if taken else None


def record_failure(session: Session, row_id: uuid.UUID, error: BaseException, *, max_attempts: int,
                   delay_for: Callable[[int], float]) -> float | None:
    """Count a failed attempt; returns the delay before the next one, or None once the event has failed."""
    row = session.get(WebhookEvent, row_id)
    row.attempts += 1
    row.error_type, row.error_message = type(error).__name__, (str(error) or type(error).__name__)[:2000]
    if row.attempts >= max_attempts:
        row.status, row.next_retry_at = "failed", None
        return None
    delay = delay_for(row.attempts)
    row.status, row.next_retry_at = "retrying", utcnow() + timedelta(seconds=delay)
    return delay


def reset_for_replay(session: Session, reference: str) -> WebhookEvent:
    """Make an event (by our id or Stripe's) processable again, whatever happened to it before."""
    try:
        row = session.get(WebhookEvent, uuid.UUID(reference))
    except ValueError:
        row = session.scalar(select(WebhookEvent).where(WebhookEvent.stripe_event_id == reference))
    if row is None:
        raise NotFound(f"no stored webhook event {reference!r}")
    row.status, row.attempts, row.next_retry_at, row.sent_at = "received", 0, None, None
    row.error_type = row.error_message = None
    return row


def unsent_events(session: Session, *, now: datetime, grace_seconds: float, lost_after_seconds: float = 600,
                  limit: int = 500) -> list[uuid.UUID]:
    """Events to (re)send: never handed to the broker, sent but not picked up for a long time
    (the message was lost, say with a killed worker), or whose retry message never came back.

    Processing claims each event, so sending one twice costs a no-op at worst.
    """
    cutoff = now - timedelta(seconds=grace_seconds)
    lost = now - timedelta(seconds=lost_after_seconds)
    return list(session.scalars(
        select(WebhookEvent.id).where(
            or_((WebhookEvent.status == "received") & WebhookEvent.sent_at.is_(None)
                & (WebhookEvent.received_at <= cutoff),
                (WebhookEvent.status == "received") & (WebhookEvent.sent_at < lost),
                (WebhookEvent.status == "retrying") & (WebhookEvent.next_retry_at < cutoff - timedelta(seconds=60))))
        .order_by(WebhookEvent.received_at).limit(limit)))


def mark_sent(session: Session, row_id: uuid.UUID) -> None:
    session.execute(update(WebhookEvent).where(WebhookEvent.id == row_id).values(sent_at=utcnow()))


def stored_ids(session: Session, event_ids: list[str]) -> set[str]:
    if not event_ids:
        return set()
    return set(session.scalars(select(WebhookEvent.stripe_event_id)
                               .where(WebhookEvent.stripe_event_id.in_(event_ids))))
