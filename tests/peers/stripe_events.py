"""Talking to the app as Stripe does: the test key and webhook secret, events, signatures and deliveries.

Tests and benchmarks alike sign with `sign` and use these credentials, so that a change to how
Stripe signs, or to the secret, is made once.
"""
from __future__ import annotations

import itertools
import json
import time
from typing import Any

import stripe

API_KEY = "sk_test_devora"
WEBHOOK_SECRET = "whsec_test_devora"
WEBHOOK_PATH = "/api/v2/webhooks/stripe"

_ids = itertools.count(1)


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header, `t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<payload>">`, made by the SDK's signer."""
    # The SDK signs text: a body that is not UTF-8 is signed as decoded with replacements, so it cannot verify.
    return stripe.WebhookSignature.generate_signature_header(payload.decode("utf-8", "replace"), secret, timestamp)


def webhook_headers(payload: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """The headers Stripe sends with `payload`."""
    return {"Content-Type": "application/json", "Stripe-Signature": sign(payload, secret)}


def post_webhook(client, payload: bytes, secret: str | None = WEBHOOK_SECRET, *, signature: str | None = None):
    """POST `payload` to the webhook endpoint through the app's test client, signed with `secret`.

    With `signature`, that Stripe-Signature header is sent as it is; with neither, none is sent.
    """
    headers = {"Content-Type": "application/json"}
    if signature is None and secret is not None:
        signature = sign(payload, secret)
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post(WEBHOOK_PATH, data=payload, headers=headers)


def deliver(client, event_type: str, obj: dict[str, Any], **event_options: Any) -> str:
    """Deliver a new signed event as Stripe would, check that it was acknowledged, and return its id."""
    payload = event(event_type, obj, **event_options)
    response = post_webhook(client, payload)
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(payload)["id"]


def event(event_type: str, obj: dict[str, Any], *, created: int | None = None, event_id: str | None = None) -> bytes:
    body = {"id": event_id or f"evt_test_{next(_ids):06d}_{int(time.time() * 1000)}", "object": "event",
            "api_version": "2026-09-30.endive", "created": created or int(time.time()), "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": event_type,
            "data": {"object": obj}}
    return json.dumps(body).encode()


def subscription(sub_id: str, customer: str, price: str, status: str = "active", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"id": sub_id, "object": "subscription", "customer": customer, "status": status,
            "cancel_at_period_end": False, "created": now,
            "items": {"object": "list", "data": [{"id": f"si_{sub_id}", "price": {"id": price, "object": "price"},
                                                  "current_period_end": now + 30 * 86400}]},
            **extra}


def invoice(invoice_id: str, customer: str, status: str = "paid", total: int = 1900, **extra: Any) -> dict[str, Any]:
    return {"id": invoice_id, "object": "invoice", "customer": customer, "status": status, "currency": "usd",
            "amount_due": total, "amount_paid": total if status == "paid" else 0, "total": total,
            "number": f"N-{invoice_id}", "created": int(time.time()), "hosted_invoice_url": None,
            "invoice_pdf": None, **extra}
