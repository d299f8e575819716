"""Request and response bodies for plans, subscriptions, invoices and usage."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PlanOut(BaseModel):
    name: str
    price_id: str | None
    monthly_generations: int
    concurrent_jobs: int
    monthly_tokens: int = Field(description="Model tokens (prompt plus completion) the plan allows a month")


class PlanList(BaseModel):
    items: list[PlanOut]


class CheckoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Literal["pro", "team"]


class RedirectOut(BaseModel):
    url: str = Field(description="Where to send the user's browser")


class SubscriptionOut(BaseModel):
    plan: str
    status: str = Field(description="inactive, or Stripe's status: active, trialing, past_due, canceled, ...")
    subscription_id: str | None
    current_period_end: datetime | None
    cancel_at_period_end: bool


class InvoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    number: str | None
    status: str | None
    currency: str
    amount_due: int
    amount_paid: int
    total: int
    hosted_invoice_url: str | None
    invoice_pdf: str | None
    period_start: datetime | None
    period_end: datetime | None
    created: datetime = Field(validation_alias="stripe_created")


class InvoiceList(BaseModel):
    items: list[InvoiceOut]


class Counter(BaseModel):
    used: int
    limit: int


class TokenBudget(Counter):
    left: int


class UsageOut(BaseModel):
    plan: str
    period_start: datetime
    resets_at: datetime
    generations: Counter
    concurrent_jobs: Counter
    tokens: TokenBudget = Field(description="Model tokens of this month's jobs (failed and canceled ones included)")


class WebhookAck(BaseModel):
    received: bool
    duplicate: bool
