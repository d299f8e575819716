"""StripeGateway over real HTTP through the real SDK: localstripe for behaviour, the stub for faults."""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from shared.integrations.stripe_gateway import (
    StripeGateway,
    StripePermanent,
    StripeTransient,
    WebhookPayloadInvalid,
    WebhookSignatureInvalid,
    WebhooksNotConfigured,
)
from shared.settings import Settings
from tests.peers.localstripe_peer import LocalStripe
from tests.peers.processes import free_port
from tests.peers.stripe_events import API_KEY, WEBHOOK_SECRET, sign
from tests.peers.stripe_stub import DEFAULT_PRICE_ID, Fault, StripeStub

GatewayFactory = Callable[..., StripeGateway]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def localstripe_gateway(localstripe: LocalStripe, stripe_settings: Callable[..., Settings]) -> StripeGateway:
    return StripeGateway(stripe_settings(localstripe.url, stripe_max_network_retries=0))


@pytest.fixture
def localstripe_sdk(localstripe: LocalStripe) -> stripe.StripeClient:
    """The bare SDK, for setting up what the gateway deliberately cannot create (plans, cards)."""
    return stripe.StripeClient(API_KEY, base_addresses={"api": localstripe.url},
                               max_network_retries=0, http_client=stripe.RequestsClient(timeout=5))


@pytest.fixture
def stub_gateway(stripe_stub: StripeStub, stripe_settings: Callable[..., Settings]) -> GatewayFactory:
    def build(**overrides: object) -> StripeGateway:
        return StripeGateway(stripe_settings(stripe_stub.url, **overrides))

    return build


def subscribe(sdk: stripe.StripeClient, customer_id: str) -> stripe.Subscription:
    """Give the customer a card and a monthly subscription, as a completed Checkout would."""
    card = sdk.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}})
    sdk.v1.payment_methods.attach(card.id, params={"customer": customer_id})
    sdk.v1.customers.update(customer_id, params={"invoice_settings": {"default_payment_method": card.id}})
    # localstripe has no Price API; a Plan is what its subscriptions accept.
    plan = sdk.v1.plans.create(params={"id": unique("plan"), "amount": 1900, "currency": "usd",
                                       "interval": "month", "product": {"name": "Devora Pro"}})
    return sdk.v1.subscriptions.create(params={"customer": customer_id, "items": [{"plan": plan.id}]})


# --- against localstripe ---------------------------------------------------------------


def test_create_customer_stores_email_and_user_id(localstripe_gateway: StripeGateway) -> None:
    user_id = unique("user")
    customer = localstripe_gateway.create_customer(user_id, f"{user_id}@example.com")

    fetched = localstripe_gateway.retrieve_customer(customer.id)
    assert fetched.id == customer.id
    assert fetched.email == f"{user_id}@example.com"
    assert fetched.metadata["user_id"] == user_id


def test_subscriptions_are_listed_with_canceled_ones_and_their_invoices(
        localstripe_gateway: StripeGateway, localstripe_sdk: stripe.StripeClient) -> None:
    customer = localstripe_gateway.create_customer(unique("user"), "billing@example.com")
    canceled = subscribe(localstripe_sdk, customer.id)
    localstripe_sdk.v1.subscriptions.cancel(canceled.id)
    active = subscribe(localstripe_sdk, customer.id)

    statuses = {s.id: s.status for s in localstripe_gateway.list_subscriptions(customer.id)}
    assert statuses == {canceled.id: "canceled", active.id: "active"}
    assert localstripe_gateway.retrieve_subscription(active.id).customer == customer.id
    invoices = localstripe_gateway.list_invoices(customer.id)
    assert {i.subscription for i in invoices} == {canceled.id, active.id}
    assert all(i.status == "paid" and i.amount_paid == 1900 for i in invoices)


def test_list_events_follows_every_page_since_the_timestamp(
        localstripe_gateway: StripeGateway, localstripe_sdk: stripe.StripeClient) -> None:
    since = int(time.time())
    customer = localstripe_gateway.create_customer(unique("user"), "events@example.com")
    subscription = subscribe(localstripe_sdk, customer.id)

    events = localstripe_gateway.list_events(created_gte=since, limit=2)

    assert len({e.id for e in events}) == len(events)
    assert all(e.created >= since for e in events)
    ours = {e.type: e for e in events if getattr(e.data.object, "id", None) in (customer.id, subscription.id)}
    assert {"customer.created", "customer.subscription.created"} <= set(ours)
    assert ours["customer.created"].data.object.id == customer.id


def test_retrieve_customers_returns_found_ones_and_reports_the_missing_id(
        localstripe_gateway: StripeGateway) -> None:
    created = [localstripe_gateway.create_customer(unique("user"), "batch@example.com").id for _ in range(5)]
    missing = "cus_doesnotexist"

    results = localstripe_gateway.retrieve_customers([*created, missing], max_concurrency=3)

    assert set(results) == {*created, missing}
    assert all(isinstance(results[i], stripe.Customer) and results[i].id == i for i in created)
    assert isinstance(results[missing], StripePermanent)
    assert results[missing].http_status == 404


def test_webhooks_localstripe_delivers_pass_construct_event(
        localstripe: LocalStripe, localstripe_gateway: StripeGateway) -> None:
    received: list[tuple[bytes, str | None]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, self.headers.get("Stripe-Signature")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    endpoint_id, url = unique("we"), f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    localstripe.register_webhook(endpoint_id, url, WEBHOOK_SECRET, events=["customer.created"])
    try:
        customer = localstripe_gateway.create_customer(unique("user"), "hook@example.com")
        # localstripe waits about a second before delivering.
        deadline = time.monotonic() + 5
        while not any(customer.id.encode() in body for body, _ in received) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        localstripe.mute_webhook(endpoint_id, url, WEBHOOK_SECRET)
        server.shutdown()
        server.server_close()

    deliveries = [(b, s) for b, s in received if customer.id.encode() in b]
    assert deliveries, "localstripe delivered no customer.created within 5 s"
    event = localstripe_gateway.construct_event(*deliveries[0])
    assert event.type == "customer.created"
    assert event.data.object["id"] == customer.id


# --- webhook verification ---------------------------------------------------------------


@pytest.fixture
def webhook_gateway(stripe_settings: Callable[..., Settings]) -> StripeGateway:
    # Verification is local: the API base is never contacted.
    return StripeGateway(stripe_settings("http://127.0.0.1:9", stripe_webhook_tolerance_seconds=300))


EVENT_BODY = json.dumps({"id": "evt_test_1", "object": "event", "type": "customer.created",
                         "created": 1_700_000_000, "data": {"object": {"id": "cus_1", "object": "customer"}}}
                        ).encode()


def test_construct_event_accepts_a_body_signed_with_the_secret(webhook_gateway: StripeGateway) -> None:
    event = webhook_gateway.construct_event(EVENT_BODY, sign(EVENT_BODY))
    assert (event.id, event.type, event.data.object["id"]) == ("evt_test_1", "customer.created", "cus_1")


@pytest.mark.parametrize("header", [
    pytest.param(sign(EVENT_BODY, secret="whsec_someone_else"), id="wrong-secret"),
    pytest.param(sign(EVENT_BODY.replace(b"cus_1", b"cus_2")), id="body-changed-after-signing"),
    pytest.param(sign(EVENT_BODY, timestamp=int(time.time()) - 301), id="older-than-tolerance"),
    pytest.param(None, id="missing"),
    pytest.param("", id="empty"),
    pytest.param("not a signature", id="garbled"),
    pytest.param("t=123", id="no-v1-signature"),
])
def test_construct_event_rejects_a_bad_signature(webhook_gateway: StripeGateway, header: str | None) -> None:
    with pytest.raises(WebhookSignatureInvalid) as caught:
        webhook_gateway.construct_event(EVENT_BODY, header)
    assert isinstance(caught.value.__cause__, stripe.SignatureVerificationError)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", "caf\u00e9".encode("latin-1"),
                                  b'{"object": "v2.core.event", "id": "evt_thin"}'],
                         ids=["malformed-json", "json-array", "not-utf8", "thin-v2-event"])
def test_construct_event_rejects_a_signed_body_that_is_not_an_event(
        webhook_gateway: StripeGateway, body: bytes) -> None:
    header = sign(body)
    with pytest.raises(WebhookPayloadInvalid):
        webhook_gateway.construct_event(body, header)


def test_construct_event_without_a_configured_secret_is_not_blamed_on_the_sender(
        stripe_settings: Callable[..., Settings]) -> None:
    gateway = StripeGateway(stripe_settings("http://127.0.0.1:9", stripe_webhook_secret=""))
    with pytest.raises(WebhooksNotConfigured) as caught:
        gateway.construct_event(EVENT_BODY, sign(EVENT_BODY))
    assert caught.value.status == 503 and "STRIPE_WEBHOOK_SECRET" in caught.value.detail


# --- against the stub -------------------------------------------------------------------


def test_construction_opens_no_connection(stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    stub_gateway()
    assert stripe_stub.requests == []


def test_create_customer_twice_for_one_user_returns_the_same_customer(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway()
    first = gateway.create_customer("user-42", "a@example.com")
    second = gateway.create_customer("user-42", "a@example.com")

    assert first.id == second.id
    assert len(stripe_stub.customers) == 1
    sent = stripe_stub.requests_to("/v1/customers", "POST")
    assert [r.idempotency_key for r in sent] == ["devora-customer-user-42"] * 2
    assert sent[0].form["metadata[user_id]"] == "user-42"


def test_reusing_an_idempotency_key_with_other_params_is_permanent(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway()
    gateway.create_customer("user-7", "old@example.com")

    with pytest.raises(StripePermanent) as caught:
        gateway.create_customer("user-7", "new@example.com")
    assert caught.value.http_status == 400
    assert isinstance(caught.value.__cause__, stripe.IdempotencyError)


def test_plain_429_is_not_retried_by_the_sdk_and_surfaces_as_transient(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway(stripe_max_network_retries=2)
    stripe_stub.fail_next("/v1/customers", [429, 200])

    with pytest.raises(StripeTransient) as caught:
        gateway.create_customer("user-9", "a@example.com")
    assert (caught.value.http_status, caught.value.code) == (429, "rate_limit")
    assert isinstance(caught.value.__cause__, stripe.RateLimitError)
    assert len(stripe_stub.requests_to("/v1/customers")) == 1

    # What the Celery retry does later: the same call, hence the same key, now succeeds.
    gateway.create_customer("user-9", "a@example.com")
    keys = {r.idempotency_key for r in stripe_stub.requests_to("/v1/customers")}
    assert keys == {"devora-customer-user-9"}


@pytest.mark.parametrize("retries", [0, 2])
def test_429_marked_should_retry_succeeds_only_when_retries_are_on(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory, retries: int) -> None:
    gateway = stub_gateway(stripe_max_network_retries=retries)
    stripe_stub.fail_next("/v1/checkout/sessions", [Fault.lock_timeout(), 200])
    customer = gateway.create_customer("user-3", "a@example.com")

    def checkout() -> stripe.checkout.Session:
        return gateway.create_checkout_session(
            customer_id=customer.id, price_id=DEFAULT_PRICE_ID, success_url="https://app.test/ok",
            cancel_url="https://app.test/cancel", idempotency_key="checkout-job-1")

    if retries:
        assert checkout().mode == "subscription"
    else:
        with pytest.raises(StripeTransient):
            checkout()
    attempts = stripe_stub.requests_to("/v1/checkout/sessions")
    assert len(attempts) == (2 if retries else 1)
    assert {r.idempotency_key for r in attempts} == {"checkout-job-1"}


def test_repeated_500_is_transient_after_the_sdk_retries_with_one_key(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway(stripe_max_network_retries=2)
    stripe_stub.fail_next("/v1/customers", [500, 500, 500])

    with pytest.raises(StripeTransient) as caught:
        gateway.create_customer("user-5", "a@example.com")
    assert caught.value.http_status == 500
    attempts = stripe_stub.requests_to("/v1/customers")
    assert len(attempts) == 3
    assert {r.idempotency_key for r in attempts} == {"devora-customer-user-5"}


@pytest.mark.parametrize(("status", "sdk_error"), [
    (400, stripe.InvalidRequestError),
    (401, stripe.AuthenticationError),
    (402, stripe.CardError),
    (403, stripe.PermissionError),
    (404, stripe.InvalidRequestError),
])
def test_client_errors_are_permanent_and_never_retried(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory, status: int, sdk_error: type) -> None:
    gateway = stub_gateway(stripe_max_network_retries=2)
    stripe_stub.fail_next("/v1/customers", [status])

    with pytest.raises(StripePermanent) as caught:
        gateway.create_customer("user-1", "a@example.com")
    assert caught.value.http_status == status
    assert type(caught.value.__cause__) is sdk_error
    assert len(stripe_stub.requests_to("/v1/customers")) == 1


def test_card_error_keeps_the_decline_code(stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    stripe_stub.fail_next("/v1/customers", [402])
    with pytest.raises(StripePermanent) as caught:
        stub_gateway().create_customer("user-2", "a@example.com")
    assert caught.value.code == "card_declined"


@pytest.mark.parametrize(("status", "sdk_error"), [(429, stripe.RateLimitError), (503, stripe.APIError)])
def test_server_side_failures_are_transient(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory, status: int, sdk_error: type) -> None:
    gateway = stub_gateway(stripe_max_network_retries=0)
    customer = gateway.create_customer("user-9", "a@example.com")
    stripe_stub.fail_next("/v1/customers/" + customer.id, [status])
    with pytest.raises(StripeTransient) as caught:
        gateway.retrieve_customer(customer.id)
    assert type(caught.value.__cause__) is sdk_error


def test_unknown_price_in_checkout_is_permanent_after_one_request(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway(stripe_max_network_retries=2)
    customer = gateway.create_customer("user-8", "a@example.com")

    with pytest.raises(StripePermanent) as caught:
        gateway.create_checkout_session(customer_id=customer.id, price_id="price_gone",
                                        success_url="https://app.test/ok", cancel_url="https://app.test/no",
                                        idempotency_key="checkout-job-2")
    assert (caught.value.http_status, caught.value.code) == (400, "resource_missing")
    assert len(stripe_stub.requests_to("/v1/checkout/sessions")) == 1


def test_a_slow_answer_times_out_quickly_as_transient(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway(stripe_timeout_seconds=0.3, stripe_max_network_retries=0)
    customer = gateway.create_customer("user-10", "a@example.com")
    stripe_stub.fail_next("/v1/customers/" + customer.id, [Fault.slow(5)])

    started = time.monotonic()
    with pytest.raises(StripeTransient) as caught:
        gateway.retrieve_customer(customer.id)
    assert time.monotonic() - started < 2
    assert isinstance(caught.value.__cause__, stripe.APIConnectionError)


def test_a_timed_out_create_is_retried_with_the_same_key(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway(stripe_timeout_seconds=0.3, stripe_max_network_retries=1)
    stripe_stub.fail_next("/v1/customers", [Fault.slow(5), 200])

    gateway.create_customer("user-6", "a@example.com")
    attempts = stripe_stub.requests_to("/v1/customers")
    assert [r.idempotency_key for r in attempts] == ["devora-customer-user-6"] * 2


def test_unreachable_stripe_is_transient(stripe_settings: Callable[..., Settings]) -> None:
    gateway = StripeGateway(stripe_settings(f"http://127.0.0.1:{free_port()}", stripe_max_network_retries=0))
    with pytest.raises(StripeTransient):
        gateway.retrieve_customer("cus_1")


def test_checkout_session_is_a_subscription_for_one_unit_of_the_price(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway()
    customer = gateway.create_customer("user-4", "a@example.com")

    session = gateway.create_checkout_session(
        customer_id=customer.id, price_id=DEFAULT_PRICE_ID, success_url="https://app.test/ok",
        cancel_url="https://app.test/cancel", idempotency_key="checkout-job-3")

    assert session.url.startswith("https://checkout.stripe.com/")
    [sent] = stripe_stub.requests_to("/v1/checkout/sessions")
    assert sent.idempotency_key == "checkout-job-3"
    assert sent.form == {"mode": "subscription", "customer": customer.id,
                         "line_items[0][price]": DEFAULT_PRICE_ID, "line_items[0][quantity]": "1",
                         "success_url": "https://app.test/ok", "cancel_url": "https://app.test/cancel"}


def test_portal_session_is_opened_for_the_customer(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway()
    customer = gateway.create_customer("user-10", "a@example.com")

    session = gateway.create_portal_session(customer_id=customer.id, return_url="https://app.test/billing")

    assert session.customer == customer.id
    assert session.url.startswith("https://billing.stripe.com/")
    [sent] = stripe_stub.requests_to("/v1/billing_portal/sessions")
    assert sent.form == {"customer": customer.id, "return_url": "https://app.test/billing"}


def test_retrieve_customers_never_runs_more_than_max_concurrency_at_once(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    gateway = stub_gateway()
    ids = [gateway.create_customer(f"user-batch-{i}", "a@example.com").id for i in range(6)]
    for customer_id in ids:
        stripe_stub.fail_next(f"/v1/customers/{customer_id}", [Fault.slow(0.2)])

    started = time.monotonic()
    results = gateway.retrieve_customers(ids, max_concurrency=2)

    # Six 0.2 s answers, two at a time, cannot finish in under three rounds.
    assert time.monotonic() - started >= 0.55
    assert [results[i].id for i in ids] == ids


def test_api_key_never_appears_in_errors_logs_or_repr(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture) -> None:
    gateway = stub_gateway(stripe_max_network_retries=0)
    # Real Stripe masks the key; a peer that echoes it must still not leak it through us.
    stripe_stub.fail_next("/v1/customers", [Fault(401, {"error": {
        "type": "invalid_request_error", "message": f"Invalid API Key provided: {API_KEY}"}})])

    with caplog.at_level(logging.DEBUG, logger="shared.integrations"), pytest.raises(StripePermanent) as caught:
        gateway.create_customer("user-11", "a@example.com")

    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)
    assert API_KEY not in repr(gateway)
    # Only our own lines: the SDK's "stripe" logger echoes raw bodies at DEBUG by design.
    assert caplog.records
    assert API_KEY not in caplog.text
    assert WEBHOOK_SECRET not in repr(gateway)


def test_webhook_secret_never_appears_in_signature_errors(webhook_gateway: StripeGateway) -> None:
    with pytest.raises(WebhookSignatureInvalid) as caught:
        webhook_gateway.construct_event(EVENT_BODY, sign(EVENT_BODY, secret="whsec_wrong"))
    assert WEBHOOK_SECRET not in str(caught.value)


def test_retrieve_customers_of_no_ids_makes_no_request(
        stripe_stub: StripeStub, stub_gateway: GatewayFactory) -> None:
    assert stub_gateway().retrieve_customers([]) == {}
    assert stripe_stub.requests == []

