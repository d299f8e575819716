"""What a Stripe event must look like before it is stored: the envelope, and the part of `data.object`
each handled type reads.

A signed body is trusted to come from Stripe, not to have the shape our columns and handlers
need: lengths fit the columns on every database, numbers fit 64 bits and timestamps a date,
text holds no NUL or lone surrogate. Anything else is refused before it is stored, so a stored
event can always be processed to an outcome.
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from shared.schemas.common import StoredText

# Stripe ids are short ASCII words such as evt_1Nx..., cus_..., in_...
StripeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,255}$")]
Text = Annotated[StoredText, Field(max_length=255)]
Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
# Seconds since 1970, up to the last second before the year 3000 (UTC). Stripe's timestamps are
# within years of now; the year 9999 that a date can hold is no bound: a PostgreSQL server east
# of UTC cannot read 9999-12-31 back ("timestamp too large"), and Python overflows adding a day
# to it. A thousand years of margin leaves every time zone and every date computation in range.
LATEST_TIMESTAMP = 32_503_679_999
Timestamp = Annotated[StrictInt, Field(ge=0, le=LATEST_TIMESTAMP)]


class _Shape(BaseModel):
    # Stripe adds fields over time; only the ones read here are checked.
    model_config = ConfigDict(extra="allow")


class EventData(_Shape):
    object: dict[str, Any]


class EventEnvelope(_Shape):
    id: StripeId
    type: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", max_length=100)]
    created: Timestamp
    livemode: StrictBool = False
    data: EventData


class _Ref(_Shape):
    id: StripeId | None = None


class CheckoutSession(_Shape):
    customer: StripeId | None = None
    subscription: StripeId | None = None
    client_reference_id: Text | None = None
    metadata: dict[str, Text] | None = None


class SubscriptionItem(_Shape):
    price: _Ref | None = None
    plan: _Ref | None = None
    current_period_end: Timestamp | None = None


class SubscriptionItems(_Shape):
    data: list[SubscriptionItem] = []


class Subscription(_Shape):
    id: StripeId
    customer: StripeId | None = None
    status: Annotated[StoredText, Field(max_length=32)] | None = None
    items: SubscriptionItems | None = None
    plan: _Ref | None = None
    current_period_end: Timestamp | None = None
    cancel_at_period_end: StrictBool | None = None
    created: Timestamp | None = None


class InvoiceObject(_Shape):
    id: StripeId
    customer: StripeId | None = None
    subscription: StripeId | None = None
    number: Annotated[StoredText, Field(max_length=100)] | None = None
    status: Annotated[StoredText, Field(max_length=32)] | None = None
    currency: Annotated[StoredText, Field(max_length=10)] | None = None
    amount_due: Int64 | None = None
    amount_paid: Int64 | None = None
    total: Int64 | None = None
    hosted_invoice_url: Annotated[StoredText, Field(max_length=2000)] | None = None
    invoice_pdf: Annotated[StoredText, Field(max_length=2000)] | None = None
    period_start: Timestamp | None = None
    period_end: Timestamp | None = None
    created: Timestamp | None = None


class CustomerObject(_Shape):
    id: StripeId
