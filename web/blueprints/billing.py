"""Plans, checkout, the customer portal, the subscription, invoices and usage."""
from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from shared import billing, quotas
from shared.errors import Conflict
from shared.integrations.stripe_gateway import BillingNotConfigured
from shared.jobs import submission
from shared.models.base import utcnow
from shared.schemas.billing import (
    CheckoutBody, Counter, InvoiceList, InvoiceOut, PlanList, PlanOut, RedirectOut, SubscriptionOut, TokenBudget,
    UsageOut,
)
from web.auth import current_user, current_user_id
from web.caching import cache_get, cache_set
from web.dispatch import enqueue_submitted
from web.metrics import JOBS_SUBMITTED
from web.openapi import BEARER, responses
from web.responses import JOB_ACCEPTED, job_accepted
from web.state import db_session, state

bp = APIBlueprint("billing", __name__, url_prefix="/api/v2/billing", abp_tags=[Tag(name="billing")])


@bp.get("/plans", responses=responses({200: PlanList}))
def list_plans():
    """The plans, their Stripe prices and what each allows."""
    return PlanList(items=[PlanOut(**vars(p)) for p in billing.plans(state().settings).values()]).model_dump()


def _require_stripe() -> None:
    """Refuse at once, without a network call, what only Stripe can do when billing is off."""
    if not state().settings.billing_enabled:
        raise BillingNotConfigured()


def _customer_id(user) -> str:
    """The user's Stripe customer, created (once, by a deterministic key) when missing."""
    session = db_session()
    account = billing.find_account(session, user.id)
    if account is not None and account.stripe_customer_id is not None:
        return account.stripe_customer_id
    # Created before the account is locked: Stripe may take seconds to answer, and the
    # deterministic key gives a concurrent request the same customer.
    customer_id = state().gateway.create_customer(str(user.id), user.email).id
    account = billing.account_for(session, user.id, for_update=True)
    if account.stripe_customer_id is None:
        account.stripe_customer_id = customer_id
    session.commit()
    return account.stripe_customer_id


@bp.post("/checkout", responses=responses({200: RedirectOut}, 401, 409, 502, 503), security=BEARER)
def checkout(body: CheckoutBody):
    """A Stripe Checkout page that subscribes the user to a paid plan."""
    _require_stripe()
    user = current_user()
    settings = state().settings
    account = billing.find_account(db_session(), user.id)
    if account and account.plan == body.plan and account.subscription_status in billing.ENTITLED_STATES:
        raise Conflict(f"you are already on the {body.plan} plan; manage it in the billing portal")
    customer_id = _customer_id(user)
    # One session per user, plan and hour: a double click reuses the first one.
    key = f"devora-checkout-{user.id}-{body.plan}-{utcnow():%Y%m%d%H}"
    session = state().gateway.create_checkout_session(
        customer_id=customer_id, price_id=billing.plans(settings)[body.plan].price_id, idempotency_key=key,
        success_url=f"{settings.frontend_url}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{settings.frontend_url}/billing/canceled")
    return RedirectOut(url=session.url).model_dump()


@bp.post("/portal", responses=responses({200: RedirectOut}, 401, 409, 502, 503), security=BEARER)
def portal():
    """A Stripe Customer Portal page to manage the subscription and payment methods."""
    _require_stripe()
    user = current_user()
    account = billing.find_account(db_session(), user.id)
    if account is None or account.stripe_customer_id is None:
        raise Conflict("there is no billing account yet; subscribe to a plan first")
    session = state().gateway.create_portal_session(customer_id=account.stripe_customer_id,
                                                    return_url=f"{state().settings.frontend_url}/billing")
    return RedirectOut(url=session.url).model_dump()


@bp.get("/subscription", responses=responses({200: SubscriptionOut}, 401), security=BEARER)
def subscription():
    """The user's plan and subscription as last reported by Stripe."""
    account = billing.find_account(db_session(), current_user_id())
    if account is None:
        return SubscriptionOut(plan=billing.FREE_PLAN, status=billing.SUBSCRIPTION_INACTIVE, subscription_id=None,
                               current_period_end=None, cancel_at_period_end=False).model_dump(mode="json")
    return SubscriptionOut(plan=account.plan, status=account.subscription_status,
                           subscription_id=account.subscription_id, current_period_end=account.current_period_end,
                           cancel_at_period_end=account.cancel_at_period_end).model_dump(mode="json")


@bp.get("/invoices", responses=responses({200: InvoiceList}, 401), security=BEARER)
def invoices():
    """The user's invoices, newest first (cached until a sync or webhook changes them)."""
    user = current_user()
    session = db_session()
    account = billing.find_account(session, user.id)
    key = f"invoices:{user.id}:v{account.invoices_version if account else 0}"
    body = cache_get(key)
    if body is None:
        body = InvoiceList(items=[InvoiceOut.model_validate(i) for i in billing.list_invoices(session, user.id)]
                           ).model_dump_json()
        cache_set(key, body, state().settings.cache_default_timeout)
    return Response(body, mimetype="application/json")


@bp.post("/sync", responses=responses({202: JOB_ACCEPTED}, 401, 503), security=BEARER)
def sync():
    """Refresh the customer, subscription and invoices from Stripe in a background job."""
    _require_stripe()
    session = db_session()
    job = submission.submit_billing_sync(session, state().settings, current_user_id())
    session.commit()
    JOBS_SUBMITTED.labels(job.kind).inc()
    enqueue_submitted(job)
    return job_accepted(job, replayed=False)


@bp.get("/usage", responses=responses({200: UsageOut}, 401), security=BEARER)
def usage():
    """This month's generations and model tokens, and the jobs in flight, against the plan's limits."""
    current = quotas.usage(db_session(), current_user_id(), state().settings)
    return UsageOut(plan=current.plan.name, period_start=current.period_start, resets_at=current.resets_at,
                    generations=Counter(used=current.generations_used, limit=current.plan.monthly_generations),
                    concurrent_jobs=Counter(used=current.active_jobs, limit=current.plan.concurrent_jobs),
                    tokens=TokenBudget(used=current.tokens_used, limit=current.plan.monthly_tokens,
                                       left=current.tokens_left)
                    ).model_dump(mode="json")
