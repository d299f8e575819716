"""Stripe through the official SDK: one client built from settings, every failure sorted as
retryable (`StripeTransient`) or not (`StripePermanent`).

Methods return the SDK's own objects (`stripe.StripeObject` subclasses: read fields as
attributes, `to_dict()` for plain data); list methods return Python lists of them.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import stripe
from pydantic import ValidationError

from shared.errors import ServiceUnavailable
from shared.schemas.stripe_events import EventEnvelope
from shared.settings import Settings

if TYPE_CHECKING:
    from stripe._base_address import BaseAddresses

logger = logging.getLogger(__name__)

_REDACTED = "[redacted]"
# Worth retrying later: 429s, network failures and timeouts, 5xx and 409 (the SDK raises
# APIError for both). Every other Stripe error means the request itself is wrong.
_TRANSIENT_ERRORS = (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError)


class StripeGatewayError(Exception):
    """A Stripe operation failed; the SDK exception, if any, is kept as `__cause__`."""

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.request_id = request_id


class StripeTransient(StripeGatewayError):
    """Rate limited, unreachable, timed out or failing on Stripe's side: retry later, same idempotency key."""


class StripePermanent(StripeGatewayError):
    """Stripe rejected the request (card, validation, key, permission, idempotency): retrying cannot help."""


class WebhookSignatureInvalid(StripeGatewayError):
    """The Stripe-Signature header is missing, does not match, or is older than the tolerance."""


class WebhookPayloadInvalid(StripeGatewayError):
    """A correctly signed webhook body that is not a Stripe snapshot event of a shape we can store."""

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def field_errors(error: ValidationError, prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic's errors as problem+json `errors` entries, without the input values."""
    return [{"loc": [*prefix, *(str(part) for part in item["loc"])], "msg": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False, include_input=False, include_context=False)][:20]


def _signed_at(header: str) -> int:
    """The header's timestamp, read exactly as the SDK's verify_header reads it (stripe/_webhook.py,
    `_get_timestamp_and_signatures`): the first comma-separated item named `t`, its value cut at a
    second "=" (split("=", 2)) and given to int(), so "t=1700000000=1" is 1700000000 there and here."""
    items = [item.split("=", 2) for item in header.split(",")]
    return int([item[1] for item in items if item[0] == "t"][0])


class BillingNotConfigured(ServiceUnavailable):
    """No STRIPE_API_KEY (allowed outside production): nothing is sent to Stripe at all."""

    title, type_slug = "Billing not configured", "billing-not-configured"

    def __init__(self, detail: str = "billing is not configured on this server (STRIPE_API_KEY is not set)") -> None:
        super().__init__(detail)


class WebhooksNotConfigured(BillingNotConfigured):
    """No STRIPE_WEBHOOK_SECRET (allowed outside production): no webhook can be verified, so none is stored."""

    def __init__(self) -> None:
        super().__init__("billing webhooks are not configured on this server (STRIPE_WEBHOOK_SECRET is not set)")


class StripeGateway:
    """Thin client over `stripe.StripeClient`, constructed from settings; opens no connection until called."""

    def __init__(self, settings: Settings) -> None:
        api_base = (settings.stripe_api_base or "").rstrip("/") or None
        self._api_base = api_base or stripe.DEFAULT_API_BASE
        self._timeout = settings.stripe_timeout_seconds
        self._max_network_retries = settings.stripe_max_network_retries
        self._api_key = settings.stripe_api_key
        self._webhook_secret = settings.stripe_webhook_secret
        self._webhook_tolerance = settings.stripe_webhook_tolerance_seconds
        # An override exists only to reach a local peer: send every Stripe host there so
        # nothing a test or a developer does can leak to the real API.
        base_addresses: BaseAddresses | None = (
            {"api": api_base, "connect": api_base, "files": api_base, "meter_events": api_base}
            if api_base else None)
        # StripeClient defaults to 0 retries and an 80 s timeout; both are set here. The
        # timeout bounds each attempt, so one call can take (retries + 1) x timeout plus backoff.
        self._client = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(),
            base_addresses=base_addresses,
            stripe_version=settings.stripe_api_version,
            max_network_retries=self._max_network_retries,
            http_client=stripe.RequestsClient(timeout=self._timeout),
        )

    def __repr__(self) -> str:
        return (f"StripeGateway(api_base={self._api_base!r}, timeout={self._timeout}, "
                f"max_network_retries={self._max_network_retries})")

    def create_customer(self, user_id: str, email: str) -> stripe.Customer:
        """Create the user's Stripe customer; repeating it within Stripe's key window returns the same one."""
        with self._translated("create_customer"):
            return self._client.v1.customers.create(
                params={"email": email, "metadata": {"user_id": user_id}},
                # Derived from the user, so a Celery retry after a lost response replays the
                # first creation instead of making a second customer.
                options={"idempotency_key": f"devora-customer-{user_id}"},
            )

    def create_checkout_session(self, *, customer_id: str, price_id: str, success_url: str,
                                cancel_url: str, idempotency_key: str) -> stripe.checkout.Session:
        """Start a subscription Checkout for one unit of `price_id`."""
        with self._translated("create_checkout_session"):
            return self._client.v1.checkout.sessions.create(
                params={"mode": "subscription", "customer": customer_id,
                        "line_items": [{"price": price_id, "quantity": 1}],
                        "success_url": success_url, "cancel_url": cancel_url},
                options={"idempotency_key": idempotency_key},
            )

    def create_portal_session(self, *, customer_id: str, return_url: str) -> stripe.billing_portal.Session:
        """Open a billing portal session for the customer."""
        with self._translated("create_portal_session"):
            return self._client.v1.billing_portal.sessions.create(
                params={"customer": customer_id, "return_url": return_url})

    def retrieve_customer(self, customer_id: str) -> stripe.Customer:
        """Fetch one customer (a deleted one comes back with `deleted=True`)."""
        with self._translated("retrieve_customer"):
            return self._client.v1.customers.retrieve(customer_id)

    def retrieve_subscription(self, subscription_id: str) -> stripe.Subscription:
        """Fetch one subscription."""
        with self._translated("retrieve_subscription"):
            return self._client.v1.subscriptions.retrieve(subscription_id)

    def list_subscriptions(self, customer_id: str) -> list[stripe.Subscription]:
        """Every subscription of the customer, canceled ones included, across all pages."""
        with self._translated("list_subscriptions"):
            page = self._client.v1.subscriptions.list(
                params={"customer": customer_id, "status": "all", "limit": 100})
            return list(page.auto_paging_iter())

    def list_invoices(self, customer_id: str, limit: int = 100) -> list[stripe.Invoice]:
        """The customer's most recent `limit` invoices (one page; Stripe allows at most 100)."""
        with self._translated("list_invoices"):
            return list(self._client.v1.invoices.list(params={"customer": customer_id, "limit": limit}))

    def list_events(self, *, created_gte: int, limit: int = 100) -> list[stripe.Event]:
        """Every event created at or after `created_gte` (Unix seconds), fetched `limit` per page."""
        with self._translated("list_events"):
            page = self._client.v1.events.list(params={"created": {"gte": created_gte}, "limit": limit})
            return list(page.auto_paging_iter())

    def retrieve_customers(self, customer_ids: list[str], *, max_concurrency: int = 8
                           ) -> dict[str, stripe.Customer | StripeGatewayError]:
        """Fetch many customers concurrently; each id maps to its customer or to the error it met."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        unique_ids = list(dict.fromkeys(customer_ids))
        if not unique_ids:
            return {}
        results: dict[str, stripe.Customer | StripeGatewayError] = {}
        # The SDK's requests client keeps one session per thread, so sharing the client is safe.
        with ThreadPoolExecutor(max_workers=min(max_concurrency, len(unique_ids)),
                                thread_name_prefix="stripe-batch") as pool:
            futures = {customer_id: pool.submit(self.retrieve_customer, customer_id)
                       for customer_id in unique_ids}
            for customer_id, future in futures.items():
                try:
                    results[customer_id] = future.result()
                except StripeGatewayError as error:
                    results[customer_id] = error
        return results

    def construct_event(self, payload: bytes, signature_header: str | None) -> EventEnvelope:
        """Verify a webhook's signature and age against the raw body, then check the event's envelope.

        The signature's timestamp must be within the tolerance in either direction: the SDK
        refuses old ones, and one far in the future is refused here too.
        """
        secret = self._webhook_secret.get_secret_value()
        if not secret:
            # A configuration fault, not the sender's: it must not read as a bad signature.
            raise WebhooksNotConfigured()
        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature_header, secret,
                                                  tolerance=self._webhook_tolerance)
        except stripe.SignatureVerificationError as exc:
            message = self._redact(f"Webhook signature rejected: {exc.user_message}")
            raise WebhookSignatureInvalid(message) from exc
        except UnicodeDecodeError as exc:
            raise WebhookPayloadInvalid("Webhook body is not UTF-8 text") from exc
        try:
            signed_at = _signed_at(signature_header or "")
        except (ValueError, IndexError):
            # Not reached while the SDK reads the header as above; should a later SDK read it
            # differently, the header is refused rather than answered with a 500.
            raise WebhookSignatureInvalid("Webhook signature rejected: its timestamp cannot be read") from None
        if signed_at > time.time() + self._webhook_tolerance:
            raise WebhookSignatureInvalid("Webhook signature rejected: its timestamp is in the future")
        try:
            return EventEnvelope.model_validate_json(payload)
        except ValidationError as exc:
            raise WebhookPayloadInvalid("Webhook body is not a Stripe event we can store",
                                        errors=field_errors(exc)) from None

    @contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        if not self._api_key.get_secret_value():
            raise BillingNotConfigured()
        try:
            yield
        except stripe.StripeError as exc:
            raise self._translate(operation, exc) from exc

    def _translate(self, operation: str, exc: stripe.StripeError) -> StripeGatewayError:
        kind = StripeTransient if isinstance(exc, _TRANSIENT_ERRORS) else StripePermanent
        # Some SDK errors (rate limits among them) carry the code only in the error body.
        code = exc.code or getattr(exc.error, "code", None)
        message = self._redact(
            f"Stripe {operation} failed: {type(exc).__name__} (HTTP {exc.http_status}, code {code}): "
            f"{exc.user_message or 'no message'}")
        logger.warning("%s request_id=%s", message, exc.request_id)
        return kind(message, code=code, http_status=exc.http_status, request_id=exc.request_id)

    def _redact(self, text: str) -> str:
        for secret in (self._api_key, self._webhook_secret):
            value = secret.get_secret_value()
            if value:
                text = text.replace(value, _REDACTED)
        return text
