"""The Stripe webhook endpoint: verification before storage, dedup, and the outbox."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from shared.models import WebhookEvent
from tests.peers.stripe_events import WEBHOOK_SECRET, event, invoice, post_webhook, sign


def stored(db) -> int:
    with db.transaction() as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent))


def test_a_verified_event_is_stored_raw_and_acknowledged(client, db):
    payload = event("invoice.paid", invoice("in_1", "cus_unknown"))
    response = post_webhook(client, payload)
    assert response.status_code == 200
    assert response.get_json() == {"received": True, "duplicate": False}
    with db.transaction() as session:
        row = session.scalars(select(WebhookEvent)).one()
        assert row.payload.encode() == payload and row.type == "invoice.paid" and row.status == "received"
        assert row.sent_at is not None, "handed to the broker"


@pytest.mark.parametrize("shape", ["missing signature", "wrong secret", "tampered body", "stale timestamp",
                                   "future garbage header", "malformed body", "not an event",
                                   "number too long"])
def test_every_bad_webhook_is_a_400_and_nothing_is_stored(client, db, shape):
    payload = event("invoice.paid", invoice("in_2", "cus_x"))
    header = sign(payload)
    if shape == "missing signature":
        header = None
    elif shape == "wrong secret":
        header = sign(payload, "whsec_someone_else")
    elif shape == "tampered body":
        payload = payload.replace(b'"total": 1900', b'"total": 1')
    elif shape == "stale timestamp":
        header = sign(payload, timestamp=int(time.time()) - 301)
    elif shape == "future garbage header":
        header = "t=abc,v1=zzz"
    elif shape == "malformed body":
        payload = b'{"id": "evt_1", "type": '
        header = sign(payload)
    elif shape == "not an event":
        payload = json.dumps([1, 2, 3]).encode()
        header = sign(payload)
    elif shape == "number too long":  # more digits than Python's int() reads
        payload = payload.replace(b'"total": 1900', b'"total": ' + b"9" * 5000)
        header = sign(payload)
    response = post_webhook(client, payload, secret=None, signature=header)
    assert response.status_code == 400, shape
    assert response.content_type == "application/problem+json"
    assert WEBHOOK_SECRET not in response.get_data(as_text=True)
    assert stored(db) == 0


def test_a_duplicate_is_acknowledged_and_not_stored_twice(client, db, app):
    payload = event("invoice.paid", invoice("in_3", "cus_x"))
    first = post_webhook(client, payload)
    second = post_webhook(client, payload)
    assert first.get_json()["duplicate"] is False and second.get_json()["duplicate"] is True
    assert stored(db) == 1
    event_id = json.loads(payload)["id"]
    dedup = app.extensions["devora"].redis
    assert 6 * 86400 < dedup.ttl(f"devora:webhook:{event_id}") <= 7 * 86400, "marked for 7 days"


def test_the_database_catches_a_duplicate_the_marker_missed(client, db, app):
    payload = event("invoice.paid", invoice("in_4", "cus_x"))
    post_webhook(client, payload)
    app.extensions["devora"].redis.delete(f"devora:webhook:{json.loads(payload)['id']}")
    again = post_webhook(client, payload)
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert stored(db) == 1


@pytest.mark.parametrize("form", ["t={ts}=1,v1={sig}", "t= {ts} ,v1={sig}", "t=+{ts},v1={sig}",
                                  "t={ts},t=later,v1={sig}"],
                         ids=["second equals sign", "spaces", "plus sign", "second t"])
def test_a_signature_header_the_sdk_accepts_is_read_as_the_sdk_reads_it(client, db, form):
    # The SDK reads t= with split("=", 2) and int(), and only the first t=; these headers verify.
    payload = event("invoice.paid", invoice("in_5", "cus_x"))
    now = int(time.time())
    signature = sign(payload, timestamp=now).partition(",v1=")[2]
    response = post_webhook(client, payload, secret=None, signature=form.format(ts=now, sig=signature))
    assert response.status_code == 200, response.get_json()
    assert stored(db) == 1


def test_a_future_timestamp_is_refused_however_the_header_spells_it(client, db):
    payload = event("invoice.paid", invoice("in_6", "cus_x"))
    future = int(time.time()) + 3600
    signature = sign(payload, timestamp=future).partition(",v1=")[2]
    response = post_webhook(client, payload, secret=None, signature=f"t={future}=1,v1={signature}")
    assert response.status_code == 400 and "future" in response.get_json()["detail"]
    assert stored(db) == 0
