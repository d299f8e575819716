"""Stripe-shaped webhook events, signed the way Stripe signs them."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any

_ids = itertools.count(1)


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header: `t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<payload>">`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


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
