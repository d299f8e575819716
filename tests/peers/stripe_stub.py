"""A loopback HTTP stub speaking enough of Stripe's v1 REST API for the real SDK, with
request recording, idempotency replay and injected faults."""
from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.peers.processes import ThreadedPeer

DEFAULT_PRICE_ID = "price_devora_pro"

# Bodies as Stripe sends them for each status; a Fault may replace any of them.
_CANNED_ERRORS: dict[int, dict[str, Any]] = {
    400: {"type": "invalid_request_error", "code": "parameter_invalid", "message": "Invalid request."},
    401: {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"},
    402: {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
          "message": "Your card was declined.", "param": ""},
    403: {"type": "invalid_request_error", "code": "secret_key_required",
          "message": "The provided key does not have the required permissions for this endpoint."},
    404: {"type": "invalid_request_error", "code": "resource_missing", "message": "No such resource."},
    409: {"type": "invalid_request_error", "code": "lock_timeout",
          "message": "This object cannot be accessed right now because another API request is using it."},
    429: {"type": "invalid_request_error", "code": "rate_limit",
          "message": "Request rate limit exceeded. Learn more about rate limits here "
                     "https://stripe.com/docs/rate-limits."},
    500: {"type": "api_error", "message": "An unknown error occurred"},
    502: {"type": "api_error", "message": "An unknown error occurred"},
    503: {"type": "api_error", "message": "An unknown error occurred"},
}


@dataclass(frozen=True)
class Fault:
    """One canned answer. A 2xx status lets the request through after `delay`; any other status
    answers with `body` (default: Stripe's error body for that status) and `headers`."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def lock_timeout(cls) -> Fault:
        """A 429 carrying `Stripe-Should-Retry: true`, as Stripe sends for lock timeouts; the SDK
        retries only this kind of 429, never a plain rate limit."""
        return cls(429, {"error": {"type": "invalid_request_error", "code": "lock_timeout",
                                   "message": "This object cannot be accessed right now."}},
                   {"Stripe-Should-Retry": "true"})

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Let the request through, but only after `delay` seconds."""
        return cls(200, delay=delay)


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the stub received it; header names are lowercased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


class StripeStub(ThreadedPeer):
    """Start with `with StripeStub() as stub:`; point the SDK at `stub.url`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._requests: list[RecordedRequest] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._idempotent: dict[str, tuple[tuple[Any, ...], int, dict[str, Any]]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        # Subscriptions a test puts here are what GET /v1/subscriptions/<id> answers.
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.add_price(DEFAULT_PRICE_ID)
        super().__init__(_handler_for(self), "stripe-stub")

    def fail_next(self, path: str, answers: Iterable[int | Fault]) -> None:
        """Queue answers for the next requests to `path`, e.g. `[429, 200]` or `[500, 500, 500]`."""
        with self._lock:
            self._faults[path].extend(a if isinstance(a, Fault) else Fault(a) for a in answers)

    def add_price(self, price_id: str, *, unit_amount: int = 1900, currency: str = "usd",
                  interval: str = "month", active: bool = True) -> dict[str, Any]:
        """Make a recurring price known to the stub."""
        price = {"id": price_id, "object": "price", "active": active, "currency": currency,
                 "unit_amount": unit_amount, "type": "recurring", "livemode": False,
                 "recurring": {"interval": interval, "interval_count": 1, "usage_type": "licensed"},
                 "product": f"prod_{price_id}", "created": int(time.time()), "metadata": {}}
        with self._lock:
            self.prices[price_id] = price
        return price

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The requests received for one path (and method, if given)."""
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def _handle(self, request: RecordedRequest) -> tuple[int, dict[str, Any], dict[str, str], float]:
        headers = {"Request-Id": f"req_stub{next(self._ids):06d}"}
        with self._lock:
            self._requests.append(request)
            queue = self._faults.get(request.path)
            fault = queue.popleft() if queue else None
        if fault and fault.status >= 300:
            body = fault.body or {"error": dict(_CANNED_ERRORS.get(fault.status, _CANNED_ERRORS[500]))}
            return fault.status, body, {**headers, **fault.headers}, fault.delay
        delay = fault.delay if fault else 0.0
        if not request.headers.get("authorization", "").startswith("Bearer sk_"):
            return 401, {"error": _CANNED_ERRORS[401]}, headers, delay
        key = request.idempotency_key if request.method == "POST" else None
        if key is None:
            with self._lock:
                status, body = self._route(request)
            return status, body, headers, delay
        headers["Idempotency-Key"] = key
        fingerprint = (request.method, request.path, tuple(sorted(request.form.items())))
        # One lock around lookup and execution: two concurrent requests with one key must
        # not both execute (Stripe answers the second with a 409 instead).
        with self._lock:
            saved = self._idempotent.get(key)
            if saved is None:
                status, body = self._route(request)
                # Stripe saves only requests that started executing; validation errors are not replayed.
                if status < 400:
                    self._idempotent[key] = (fingerprint, status, body)
                return status, body, headers, delay
        if saved[0] != fingerprint:
            return 400, {"error": {
                "type": "idempotency_error",
                "message": f"Keys for idempotent requests can only be used with the same parameters "
                           f"they were first used with. Try using a key other than '{key}' if you "
                           f"meant to execute a different request."}}, headers, delay
        return saved[1], saved[2], {**headers, "Idempotent-Replayed": "true"}, delay

    def _route(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        method, path, form = request.method, request.path, request.form
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/customers":
            return self._create_customer(form)
        if method == "GET" and parts[:2] == ["v1", "customers"] and len(parts) == 3:
            return self._lookup(self.customers, parts[2], "customer")
        if method == "GET" and parts[:2] == ["v1", "prices"] and len(parts) == 3:
            return self._lookup(self.prices, parts[2], "price")
        if method == "GET" and parts[:2] == ["v1", "subscriptions"] and len(parts) == 3:
            return self._lookup(self.subscriptions, parts[2], "subscription")
        if method == "GET" and path in ("/v1/subscriptions", "/v1/invoices"):
            # No subscriptions or invoices live here; localstripe covers those.
            return 200, {"object": "list", "data": [], "has_more": False, "url": path}
        if method == "POST" and path == "/v1/checkout/sessions":
            return self._create_checkout_session(form)
        if method == "POST" and path == "/v1/billing_portal/sessions":
            return self._create_portal_session(form)
        return 404, {"error": {"type": "invalid_request_error",
                               "message": f"Unrecognized request URL ({method}: {path})."}}

    def _create_customer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        customer = {"id": f"cus_stub{next(self._ids):06d}", "object": "customer",
                    "email": form.get("email"), "name": form.get("name"), "livemode": False,
                    "created": int(time.time()), "metadata": _nested(form, "metadata")}
        self.customers[customer["id"]] = customer
        return 200, customer

    def _create_checkout_session(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("mode") not in ("payment", "setup", "subscription"):
            return _invalid("Missing required param: mode.", "mode", "parameter_missing")
        price_id = form.get("line_items[0][price]")
        if price_id not in self.prices:
            return _invalid(f"No such price: '{price_id}'", "line_items[0][price]", "resource_missing")
        customer_id = form.get("customer")
        if customer_id is not None and customer_id not in self.customers:
            return _invalid(f"No such customer: '{customer_id}'", "customer", "resource_missing")
        session_id = f"cs_test_stub{next(self._ids):06d}"
        return 200, {"id": session_id, "object": "checkout.session", "mode": form["mode"],
                     "customer": customer_id, "status": "open", "payment_status": "unpaid",
                     "success_url": form.get("success_url"), "cancel_url": form.get("cancel_url"),
                     "url": f"https://checkout.stripe.com/c/pay/{session_id}", "livemode": False,
                     "created": int(time.time()), "metadata": _nested(form, "metadata")}

    def _create_portal_session(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        customer_id = form.get("customer")
        if customer_id not in self.customers:
            return _invalid(f"No such customer: '{customer_id}'", "customer", "resource_missing")
        session_id = f"bps_stub{next(self._ids):06d}"
        return 200, {"id": session_id, "object": "billing_portal.session", "customer": customer_id,
                     "return_url": form.get("return_url"), "livemode": False, "created": int(time.time()),
                     "url": f"https://billing.stripe.com/p/session/test_{session_id}"}

    @staticmethod
    def _lookup(table: dict[str, dict[str, Any]], object_id: str, kind: str) -> tuple[int, dict[str, Any]]:
        if object_id in table:
            return 200, table[object_id]
        return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                               "param": "id", "message": f"No such {kind}: '{object_id}'"}}


def _invalid(message: str, param: str, code: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": {"type": "invalid_request_error", "message": message, "param": param, "code": code}}


def _nested(form: dict[str, str], name: str) -> dict[str, str]:
    """`metadata[user_id]=u1` form fields back into `{"user_id": "u1"}`."""
    prefix = f"{name}["
    return {k[len(prefix):-1]: v for k, v in form.items() if k.startswith(prefix) and k.endswith("]")}


def _handler_for(stub: StripeStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0 closes the connection after each answer, so a client that gave up on a
        # slow answer never finds a half-used connection on its next attempt.
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            url = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command, path=url.path, query=dict(parse_qsl(url.query)),
                headers={k.lower(): v for k, v in self.headers.items()},
                form=dict(parse_qsl(raw, keep_blank_values=True)))
            status, body, headers, delay = stub._handle(request)
            if delay and stub._stopping.wait(delay):
                return
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and went away, which is what a delay test wants

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded on the stub; stderr noise would hide test output

    return Handler
