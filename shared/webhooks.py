"""Stripe webhook events: receiving each once, applying each type to the billing mirror, and the
runner that processes a stored event exactly once (retrying transient failures, recording the rest).
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from types import ModuleType
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Connection, Insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import billing
from shared.db import Database
from shared.errors import NotFound
from shared.integrations.stripe_gateway import (
    StripeGateway, StripePermanent, StripeTransient, WebhookPayloadInvalid, field_errors,
)
from shared.jobs.lifecycle import MAX_ERROR_LENGTH, backoff_seconds
from shared.jobs.states import WEBHOOK_PENDING, WebhookStatus
from shared.models import User, WebhookEvent
from shared.schemas import stripe_events as shapes
from shared.schemas.stripe_events import EventEnvelope
from shared.models.base import utcnow
from shared.settings import Settings

logger = logging.getLogger(__name__)
# Rate limits, connection errors and 5xx from Stripe, and database blips, come back.
TRANSIENT = (StripeTransient, OperationalError)


@dataclass(frozen=True)
class Received:
    """What became of a verified event: the id of its stored row, or None when it was a duplicate."""

    id: uuid.UUID | None

    @property
    def duplicate(self) -> bool:
        return self.id is None


def receive(db: Database, markers: Redis, event: EventEnvelope, payload: bytes, *,
            marker_ttl_seconds: int) -> Received:
    """Store a verified event once; a duplicate is recognised in Redis or by the unique event id.

    An event of a handled type whose object lacks what its handler reads is refused
    (`WebhookPayloadInvalid`) before anything is stored. The Redis marker is set only after
    the event was committed, so a hit is always a true duplicate; without Redis the
    database's unique constraint decides alone.
    """
    check_object(event)
    marker = f"devora:webhook:{event.id}"
    if _marker_exists(markers, marker):
        return Received(None)
    with db.engine.begin() as connection:
        row_id = store(connection, event, payload)
    try:
        markers.set(marker, "1", nx=True, ex=marker_ttl_seconds)
    except (RedisError, OSError) as error:
        logger.warning("dedup store unavailable, event %s not marked: %s", event.id, type(error).__name__)
    return Received(row_id)


def check_object(event: EventEnvelope) -> None:
    """Refuse an event of a handled type whose `data.object` lacks the shape its handler reads."""
    handled = HANDLERS.get(event.type)
    if handled is None:
        return
    try:
        handled.shape.model_validate(event.data.object)
    except ValidationError as error:
        raise WebhookPayloadInvalid(f"the {event.type} event's object is not of the shape Stripe sends",
                                    errors=field_errors(error, ("data", "object"))) from None


def _marker_exists(markers: Redis, marker: str) -> bool:
    try:
        return bool(markers.exists(marker))
    except (RedisError, OSError) as error:
        logger.warning("dedup store unavailable, relying on the database: %s", type(error).__name__)
        return False


def _insert_once(dialect: ModuleType) -> Insert:
    table = WebhookEvent.__table__
    return (dialect.insert(table).on_conflict_do_nothing(index_elements=[table.c.stripe_event_id])
            .returning(table.c.id))


# One statement, no savepoint: an event id already stored inserts nothing and returns no row.
_INSERT_ONCE = {"sqlite": _insert_once(sqlite), "postgresql": _insert_once(postgresql)}


def store(connection: Connection, event: EventEnvelope, payload: bytes) -> uuid.UUID | None:
    """Record a verified event, already marked sent (its receiver hands it over right after the commit,
    with Outbox.hand_over_marked); returns its row's id, or None when this event id is already stored."""
    now = utcnow()
    return connection.execute(_INSERT_ONCE[connection.dialect.name], {
        "id": uuid.uuid4(), "stripe_event_id": event.id, "type": event.type, "stripe_created": event.created,
        "livemode": event.livemode, "payload": payload.decode("utf-8"), "status": WebhookStatus.RECEIVED,
        "attempts": 0, "next_retry_at": None, "error_type": None, "error_message": None, "sent_at": now,
        "received_at": now, "processed_at": None, "summary": None}).scalar()


def process(db: Database, gateway: StripeGateway, settings: Settings, row_id: uuid.UUID) -> float | None:
    """Apply one stored event exactly once; returns the delay before a retry when one is due, else None.

    Claim, apply and mark done share one transaction: a concurrent delivery finds the event
    taken, and a crash rolls all of it back for the redelivery. A transient failure is
    retried with backoff up to WEBHOOK_MAX_ATTEMPTS; any other failure fails the event at
    once, visibly and replayably.
    """
    try:
        with db.transaction() as session:
            row = _claim(session, row_id)
            if row is None:
                return None
            status, summary = apply(session, row, gateway, settings)
            row.status, row.summary, row.processed_at = status, summary, utcnow()
            row.error_type = row.error_message = row.next_retry_at = None
        logger.info("webhook %s (%s): %s", row.stripe_event_id, row.type, status)
        return None
    except TRANSIENT as error:
        try:
            with db.transaction() as session:
                delay = _record_failure(session, row_id, error, retry=True, settings=settings)
        except OperationalError:
            return _unrecorded(row_id, error, settings)
        if delay is None:
            logger.error("webhook event %s failed on its last attempt: %s", row_id, type(error).__name__)
        else:
            logger.warning("webhook event %s: %s; retrying in %.1f s", row_id, type(error).__name__, delay)
        return delay
    except Exception as error:  # noqa: BLE001 - a permanent failure is recorded and can be replayed
        logger.exception("webhook event %s failed", row_id)
        try:
            with db.transaction() as session:
                _record_failure(session, row_id, error, retry=False, settings=settings)
        except OperationalError:
            return _unrecorded(row_id, error, settings)
        return None


def _unrecorded(row_id: uuid.UUID, error: BaseException, settings: Settings) -> float:
    """The database is away, so not even the failure can be written: try the whole delivery again later."""
    delay = backoff_seconds(settings, 1)
    logger.warning("webhook event %s: %s, and the database is unavailable; trying again in %.1f s", row_id,
                   type(error).__name__, delay)
    return delay


Handler = Callable[[Session, dict[str, Any], int, StripeGateway, Settings], dict[str, Any]]


@dataclass(frozen=True)
class Handled:
    """How an event type is applied, and the shape of `data.object` it reads (checked at receipt)."""

    shape: type[BaseModel]
    apply: Handler


def apply(session: Session, row: WebhookEvent, gateway: StripeGateway,
          settings: Settings) -> tuple[WebhookStatus, dict]:
    """Apply a stored event; returns its final status (`processed` or `ignored`) and a summary."""
    event = json.loads(row.payload)
    handled = HANDLERS.get(row.type)
    if handled is None:
        return WebhookStatus.IGNORED, {"reason": f"{row.type} needs no action here"}
    summary = handled.apply(session, event["data"]["object"], row.stripe_created, gateway, settings)
    return (WebhookStatus.IGNORED if summary.get("ignored") else WebhookStatus.PROCESSED), summary


def _checkout_completed(session, obj, created, gateway, settings) -> dict[str, Any]:
    account = billing.account_by_customer(session, obj.get("customer"))
    user_id = _our_user(session, obj.get("client_reference_id") or (obj.get("metadata") or {}).get("user_id"))
    if account is None and user_id is not None and obj.get("customer"):
        account = billing.account_for(session, user_id)
        account.stripe_customer_id = obj["customer"]
    if account is None:
        return {"ignored": True, "reason": "checkout for an unknown customer"}
    if not obj.get("subscription"):
        return {"ignored": True, "reason": "checkout without a subscription"}
    # The session names the subscription but does not carry it: Stripe's current view is authoritative.
    try:
        subscription = gateway.retrieve_subscription(obj["subscription"]).to_dict()
    except StripePermanent as error:
        if error.http_status != 404:
            raise
        return {"ignored": True, "reason": "checkout for a subscription Stripe does not know"}
    applied = billing.apply_subscription(session, account, subscription, as_of=created, settings=settings)
    return {"user_id": str(account.user_id), "subscription": subscription["id"], "applied": applied,
            "plan": account.plan, "status": account.subscription_status}


def _our_user(session: Session, reference: str | None) -> uuid.UUID | None:
    """The user a checkout names, if the reference is one of our user ids (another app's is ignored)."""
    try:
        user_id = uuid.UUID(reference) if reference else None
    except ValueError:
        return None
    return user_id if user_id is not None and session.get(User, user_id) is not None else None


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
        account.subscription_status, account.plan = billing.SUBSCRIPTION_CANCELED, billing.FREE_PLAN
        account.subscription_watermark = created
    return {"user_id": str(account.user_id), "customer": obj.get("id"), "plan": account.plan}


_INVOICE_VERBS = ("created", "finalized", "paid", "payment_succeeded", "payment_failed", "updated", "voided")
HANDLERS: dict[str, Handled] = {
    "checkout.session.completed": Handled(shapes.CheckoutSession, _checkout_completed),
    **{f"customer.subscription.{verb}": Handled(shapes.Subscription, _subscription_changed)
       for verb in ("created", "updated", "deleted")},
    **{f"invoice.{verb}": Handled(shapes.InvoiceObject, _invoice_changed) for verb in _INVOICE_VERBS},
    "customer.updated": Handled(shapes.CustomerObject, _customer_updated),
    "customer.deleted": Handled(shapes.CustomerObject, _customer_deleted),
}


def _claim(session: Session, row_id: uuid.UUID) -> WebhookEvent | None:
    """Take a stored event for processing in this transaction; None if it is done or taken."""
    return session.scalars(
        update(WebhookEvent).where(WebhookEvent.id == row_id, WebhookEvent.status.in_(WEBHOOK_PENDING))
        .values(status=WebhookStatus.PROCESSING, attempts=WebhookEvent.attempts + 1).returning(WebhookEvent),
        execution_options={"populate_existing": True, "synchronize_session": False},
    ).one_or_none()


def _record_failure(session: Session, row_id: uuid.UUID, error: BaseException, *, retry: bool,
                    settings: Settings) -> float | None:
    """Count a failed attempt; returns the delay before the next one, or None once the event has failed."""
    row = session.get(WebhookEvent, row_id)
    row.attempts += 1
    row.error_type = type(error).__name__
    row.error_message = (str(error) or type(error).__name__)[:MAX_ERROR_LENGTH]
    if not retry or row.attempts >= settings.webhook_max_attempts:
        row.status, row.next_retry_at = WebhookStatus.FAILED, None
        return None
    delay = backoff_seconds(settings, row.attempts)
    row.status, row.next_retry_at = WebhookStatus.RETRYING, utcnow() + timedelta(seconds=delay)
    return delay


def replay(session: Session, reference: str) -> tuple[WebhookEvent, dict[str, Any]]:
    """Make an event (by our id or Stripe's) processable again, whatever happened to it before;
    returns it and what it was before."""
    try:
        row = session.get(WebhookEvent, uuid.UUID(reference))
    except ValueError:
        row = session.scalar(select(WebhookEvent).where(WebhookEvent.stripe_event_id == reference))
    if row is None:
        raise NotFound(f"no stored webhook event {reference!r}")
    before = {"stripe_event_id": row.stripe_event_id, "type": row.type, "previous_status": row.status,
              "previous_attempts": row.attempts, "previous_error_type": row.error_type}
    row.status, row.attempts, row.next_retry_at, row.sent_at = WebhookStatus.RECEIVED, 0, None, None
    row.error_type = row.error_message = None
    return row, before


def store_missed(db: Database, gateway: StripeGateway, settings: Settings) -> list[Received]:
    """Store the recent events Stripe lists that never reached us by webhook (marked sent, to be handed
    over by the caller); returns the new rows."""
    events = gateway.list_events(created_gte=int(time.time()) - settings.webhook_sweep_lookback_seconds)
    with db.transaction() as session:
        known = stored_ids(session, [event.id for event in events])
    stored = []
    with db.transaction() as session:
        for listed in events:
            if listed.id in known:
                continue
            payload = json.dumps(listed.to_dict()).encode()
            try:
                event = EventEnvelope.model_validate_json(payload)
                check_object(event)
            except (ValidationError, WebhookPayloadInvalid) as error:
                logger.warning("sweep: event %s is not of a shape we can store: %s", listed.id, error)
                continue
            row_id = store(session.connection(), event, payload)
            if row_id is not None:
                stored.append(Received(row_id))
    return stored


def stored_ids(session: Session, event_ids: list[str]) -> set[str]:
    if not event_ids:
        return set()
    return set(session.scalars(select(WebhookEvent.stripe_event_id)
                               .where(WebhookEvent.stripe_event_id.in_(event_ids))))
