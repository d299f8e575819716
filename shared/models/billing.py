"""Billing mirror: each user's Stripe customer and subscription, their invoices, and received webhooks."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.jobs.states import WebhookStatus
from shared.models.base import Base, Timestamps, new_id


class BillingAccount(Timestamps, Base):
    __tablename__ = "billing_accounts"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    customer_deleted: Mapped[bool] = mapped_column(default=False)
    plan: Mapped[str] = mapped_column(String(20), default="free")
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    subscription_status: Mapped[str] = mapped_column(String(32), default="inactive")
    current_period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    # Stripe's `created` of the newest event applied to the subscription: an older
    # event arriving late must not undo a newer one.
    subscription_watermark: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped whenever the invoice mirror changes; cached invoice lists are keyed by it.
    invoices_version: Mapped[int] = mapped_column(default=0)
    synced_at: Mapped[datetime | None]


class MonthlyUsage(Base):
    """What a user's generation jobs created in one calendar month (UTC) have used.

    The plan's quota is checked against this row rather than by counting the month's jobs, and
    every submission takes the quota by a conditional UPDATE of it, which is also the lock that
    keeps two concurrent submissions from both taking the last slot.
    """

    __tablename__ = "monthly_usage"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # The first instant of the month, UTC.
    month: Mapped[datetime] = mapped_column(primary_key=True)
    generations: Mapped[int] = mapped_column(default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class Invoice(Timestamps, Base):
    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_user_created", "user_id", "stripe_created"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    customer_id: Mapped[str] = mapped_column(String(255))
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    number: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(10))
    amount_due: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    hosted_invoice_url: Mapped[str | None] = mapped_column(String(2000))
    invoice_pdf: Mapped[str | None] = mapped_column(String(2000))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    stripe_created: Mapped[datetime]
    watermark: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookEvent(Base):
    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_status_sent", "status", "sent_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    stripe_created: Mapped[int] = mapped_column(BigInteger)
    livemode: Mapped[bool] = mapped_column(default=False)
    # The body exactly as Stripe signed it.
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=WebhookStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(default=0)
    next_retry_at: Mapped[datetime | None]
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(String(2000))
    sent_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
