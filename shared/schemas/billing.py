"""Request and response bodies for plans, subscriptions, invoices and usage."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas.common import HeaderModel


class PlanOut(BaseModel):
    name: str
    price_id: str | None
    monthly_generations: int
    concurrent_jobs: int
    monthly_tokens: int = Field(description="Model tokens (prompt plus completion) the plan allows a month")


class PlanList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"items": [
        {"name": "free", "price_id": None, "monthly_generations": 20, "concurrent_jobs": 1,
         "monthly_tokens": 1_000_000},
        {"name": "pro", "price_id": "price_pro_monthly", "monthly_generations": 500, "concurrent_jobs": 3,
         "monthly_tokens": 25_000_000},
        {"name": "team", "price_id": "price_team_monthly", "monthly_generations": 5000, "concurrent_jobs": 10,
         "monthly_tokens": 250_000_000}]}})

    items: list[PlanOut]


class CheckoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid", openapi_extra={"example": {"plan": "pro"}})

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
    model_config = ConfigDict(json_schema_extra={"example": {
        "plan": "free", "period_start": "2026-12-01T00:00:00Z", "resets_at": "2027-01-01T00:00:00Z",
        "generations": {"used": 3, "limit": 20}, "concurrent_jobs": {"used": 1, "limit": 1},
        "tokens": {"used": 48_210, "limit": 1_000_000, "left": 951_790}}})

    plan: str
    period_start: datetime
    resets_at: datetime
    generations: Counter
    concurrent_jobs: Counter
    tokens: TokenBudget = Field(description="Model tokens of this month's jobs (failed and canceled ones included)")


class WebhookAck(BaseModel):
    received: bool
    duplicate: bool


# A Stripe event as delivered to the webhook (the body Stripe signs).
STRIPE_EVENT_EXAMPLE = {
    "id": "evt_1QxDevoraExample", "object": "event", "api_version": "2026-09-30.endive", "created": 1764581400,
    "type": "customer.subscription.updated", "livemode": False,
    "data": {"object": {"id": "sub_1QxDevoraExample", "object": "subscription", "customer": "cus_QxDevoraExample",
                        "status": "active", "cancel_at_period_end": False}},
}


class StripeSignatureHeader(HeaderModel):
    stripe_signature: str = Field(
        alias="Stripe-Signature", min_length=1, max_length=4096,
        description="Stripe's signature of the body: t=<unix time>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" with the "
                    "endpoint's signing secret> (several v1 while a secret is rolled). A missing, stale or "
                    "non-matching signature is refused with 400.")
