"""Correctly signed events of every shape: never a 500, every 200 stored, every stored event processable.

Stripe signs what it sends, but a signature says nothing of the shape; a body with a missing,
null, wrong-typed, oversized, deeply nested or odd-unicode field must be refused with a 400
before anything is stored, and whatever is stored must end `processed` or `ignored`.
"""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from shared import billing, webhooks
from shared.integrations.stripe_gateway import StripeGateway
from shared.jobs.states import WebhookStatus
from shared.models import BillingAccount, WebhookEvent
from shared.schemas.stripe_events import LATEST_TIMESTAMP
from tests.peers.stripe_events import post_webhook, sign, subscription

KNOWN_CUSTOMER, KNOWN_SUBSCRIPTION = "cus_known", "sub_known"
HANDLED = ["checkout.session.completed", "customer.subscription.created", "customer.subscription.updated",
           "customer.subscription.deleted", "invoice.paid", "invoice.payment_failed", "invoice.created",
           "customer.updated", "customer.deleted"]
UNHANDLED = ["customer.created", "charge.succeeded", "payment_intent.created"]

odd_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=10),  # NUL, surrogates
    st.just("x" * 300), st.just("y" * 3000), st.just("\x00"), st.just("\ud800"), st.just("é" * 40),
)
numbers = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False, allow_infinity=False),
                    st.just(2**63), st.just(-1), st.just(10**12), st.integers(0, 2**31))
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)
json_values = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=3),
                                                              st.dictionaries(st.text(max_size=8), children,
                                                                              max_size=3)),
                           max_leaves=8)
stripe_ids = st.from_regex(r"\A[a-z]{2,4}_[A-Za-z0-9]{1,20}\Z")
timestamps = st.integers(0, 2**31)
# What Stripe would send in each field; each is sometimes replaced by an odd value instead.
VALID_FIELDS = {
    "id": st.one_of(st.just(KNOWN_SUBSCRIPTION), stripe_ids), "customer": st.one_of(st.just(KNOWN_CUSTOMER), stripe_ids),
    "subscription": st.one_of(st.just(KNOWN_SUBSCRIPTION), stripe_ids, st.none()),
    "client_reference_id": st.one_of(st.none(), st.uuids().map(str), st.text(max_size=20)),
    "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
    "status": st.sampled_from(["active", "trialing", "canceled", "paid", "open", "past_due"]),
    "items": st.fixed_dictionaries({"data": st.lists(st.fixed_dictionaries(
        {"price": st.fixed_dictionaries({"id": st.sampled_from(["price_x", "price_devora_pro"])}),
         "current_period_end": timestamps}), max_size=2)}),
    "plan": st.fixed_dictionaries({"id": stripe_ids}), "current_period_end": timestamps,
    "cancel_at_period_end": st.booleans(), "created": timestamps, "number": st.text(max_size=20),
    "currency": st.sampled_from(["usd", "eur"]), "amount_due": st.integers(0, 10**9),
    "amount_paid": st.integers(0, 10**9), "total": st.integers(-10**9, 10**9),
    "hosted_invoice_url": st.one_of(st.none(), st.just("https://invoice.stripe.test/i/1")),
    "invoice_pdf": st.none(), "period_start": timestamps, "period_end": timestamps,
}


def mostly(valid, odd=json_values, one_in: int = 15):
    """Usually a valid value, one time in `one_in` an odd one."""
    return st.integers(1, one_in).flatmap(lambda roll: odd if roll == 1 else valid)


# Half the objects are all valid, the others have an odd value in about one field in five.
objects = st.one_of(
    st.fixed_dictionaries({}, optional=VALID_FIELDS),
    st.fixed_dictionaries({}, optional={name: mostly(valid, st.one_of(json_values, numbers), one_in=5)
                                        for name, valid in VALID_FIELDS.items()}))
event_ids = mostly(st.from_regex(r"\Aevt_[A-Za-z0-9]{8,24}\Z"), st.one_of(odd_text, st.none(), numbers))
types = mostly(st.sampled_from(HANDLED + UNHANDLED), st.one_of(odd_text, st.none()))
created = mostly(timestamps, st.one_of(numbers, odd_text, st.none()))
data = mostly(objects.map(lambda obj: {"object": obj}), st.one_of(json_values, st.just({"object": None})))


@st.composite
def bodies(draw) -> bytes:
    """A JSON event body, mostly well formed, with any field possibly missing, null or odd."""
    fields: dict[str, Any] = {"id": draw(event_ids), "object": "event", "type": draw(types),
                              "created": draw(created), "livemode": draw(mostly(st.booleans())),
                              "data": draw(data)}
    for name in list(fields):
        if draw(st.integers(0, 29)) == 0:
            del fields[name]
    if draw(st.integers(0, 19)) == 0:
        depth = draw(st.integers(1100, 3000))
        return ('{"id": "evt_deep", "type": "invoice.paid", "created": 1, "data": {"object": '
                + "[" * depth + "]" * depth + "}}").encode()
    return json.dumps(fields, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@pytest.fixture
def settings_overrides(stripe_stub) -> dict:
    stripe_stub.subscriptions[KNOWN_SUBSCRIPTION] = subscription(KNOWN_SUBSCRIPTION, KNOWN_CUSTOMER, "price_x")
    return {"stripe_api_base": stripe_stub.url}


@pytest.fixture(autouse=True)
def fresh_dedup_markers(app):
    """The Redis is shared by both database runs; a marker left by the other one would read as a duplicate."""
    redis = app.extensions["devora"].redis
    for key in redis.scan_iter(match="devora:webhook:*"):
        redis.delete(key)


@pytest.fixture
def known_customer(db, make_user):
    user, _ = make_user()
    with db.transaction() as session:
        billing.account_for(session, user.id).stripe_customer_id = KNOWN_CUSTOMER
    return user


@hypothesis_settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies())
def test_signed_events_of_any_shape_are_refused_or_stored_and_processable(client, db, settings, known_customer,
                                                                          body):
    response = post_webhook(client, body)
    assert response.status_code in (200, 400), (response.status_code, response.get_data()[:300])
    assert response.mimetype == ("application/json" if response.status_code == 200 else "application/problem+json")
    if response.status_code == 400:
        return
    event_id = json.loads(body)["id"]
    with db.transaction() as session:
        row = session.scalar(select(WebhookEvent).where(WebhookEvent.stripe_event_id == event_id))
    assert row is not None, "a 200 means stored"
    assert webhooks.process(db, StripeGateway(settings), settings, row.id) is None, "no retry is due"
    with db.transaction() as session:
        status = session.get(WebhookEvent, row.id).status
    assert status in (WebhookStatus.PROCESSED, WebhookStatus.IGNORED), (status, body[:300])


@pytest.mark.parametrize("skew", [-3600, 3600], ids=["stale", "future"])
def test_a_signature_timestamp_beyond_the_tolerance_either_way_is_refused(client, db, skew):
    body = json.dumps({"id": "evt_skewed", "type": "invoice.paid", "created": 1, "data": {"object": {}}}).encode()
    response = post_webhook(client, body, signature=sign(body, timestamp=int(time.time()) + skew))
    assert response.status_code == 400 and "timestamp" in response.get_json()["detail"].lower()
    with db.transaction() as session:
        assert session.scalars(select(WebhookEvent)).all() == []


@pytest.mark.parametrize(("change", "field"), [
    ({"id": None}, "id"), ({"created": "yesterday"}, "created"), ({"created": 2**64}, "created"),
    ({"type": "x" * 101}, "type"), ({"id": "evt_" + "a" * 300}, "id"),
    ({"data": {"object": {"id": "in_1", "customer": "cus\x00nul"}}}, "customer"),
    ({"data": {"object": {"id": "in_1", "total": "a lot"}}}, "total"),
])
def test_a_malformed_event_is_a_400_naming_the_field_and_nothing_is_stored(client, db, change, field):
    fields = {"id": "evt_malformed", "type": "invoice.paid", "created": 1_700_000_000,
              "data": {"object": {"id": "in_1", "customer": "cus_1"}}, **change}
    body = json.dumps(fields).encode()
    response = post_webhook(client, body)
    assert response.status_code == 400, response.get_json()
    problem = response.get_json()
    assert any(field in error["loc"] for error in problem["errors"]), problem
    with db.transaction() as session:
        assert session.scalars(select(WebhookEvent)).all() == []


@pytest.mark.parametrize("reference", ["not-a-uuid", "6f1c9a8e-0000-4000-8000-000000000000"],
                         ids=["not a uuid", "no such user"])
def test_a_checkout_naming_someone_elses_user_is_stored_and_ignored(client, db, settings, reference):
    body = json.dumps({"id": f"evt_ref_{len(reference)}", "type": "checkout.session.completed",
                       "created": 1_700_000_000, "data": {"object": {
                           "id": "cs_1", "customer": "cus_other_app", "subscription": "sub_other",
                           "client_reference_id": reference}}}).encode()
    assert post_webhook(client, body).status_code == 200
    with db.transaction() as session:
        row = session.scalars(select(WebhookEvent)).one()
    webhooks.process(db, StripeGateway(settings), settings, row.id)
    with db.transaction() as session:
        assert session.get(WebhookEvent, row.id).status == WebhookStatus.IGNORED


# 9999-12-31 23:59:59 UTC, the last second a UTC date holds: a server east of UTC cannot show it.
END_OF_YEAR_9999 = 253_402_300_799


@pytest.mark.parametrize("field", ["created", "current_period_end"])
def test_a_timestamp_no_server_time_zone_can_read_back_is_refused(client, db, known_customer, field):
    obj = subscription(KNOWN_SUBSCRIPTION, KNOWN_CUSTOMER, "price_x")
    fields = {"id": f"evt_late_{field}", "type": "customer.subscription.updated", "created": 1_700_000_000,
              "data": {"object": obj}}
    if field == "created":
        fields["created"] = END_OF_YEAR_9999
    else:
        obj[field] = END_OF_YEAR_9999
    response = post_webhook(client, json.dumps(fields).encode())
    assert response.status_code == 400, response.get_json()
    assert any(field in error["loc"] for error in response.get_json()["errors"])
    with db.transaction() as session:
        assert session.scalars(select(WebhookEvent)).all() == []


def test_the_latest_timestamp_accepted_reads_back_in_every_server_time_zone(client, db, settings, known_customer):
    obj = subscription(KNOWN_SUBSCRIPTION, KNOWN_CUSTOMER, "price_x", current_period_end=LATEST_TIMESTAMP)
    body = json.dumps({"id": "evt_latest", "type": "customer.subscription.updated", "created": LATEST_TIMESTAMP,
                       "data": {"object": obj}}).encode()
    assert post_webhook(client, body).status_code == 200
    with db.transaction() as session:
        row = session.scalars(select(WebhookEvent)).one()
    assert webhooks.process(db, StripeGateway(settings), settings, row.id) is None
    latest = datetime.fromtimestamp(LATEST_TIMESTAMP, UTC)
    if settings.is_sqlite:
        zones = [None]
    else:  # the farthest zones east and west of UTC
        zones = ["Etc/GMT-14", "Etc/GMT+12"]
    for zone in zones:
        engine = create_engine(db.engine.url, connect_args={"options": f"-c TimeZone={zone}"} if zone else {})
        try:
            with Session(engine) as session:
                account = session.scalars(select(BillingAccount)
                                          .where(BillingAccount.stripe_customer_id == KNOWN_CUSTOMER)).one()
                assert account.current_period_end.replace(tzinfo=account.current_period_end.tzinfo or UTC) == latest
        finally:
            engine.dispose()
