"""Plans, and the local mirror of Stripe billing state (shared.quotas counts what plans allow)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.models import BillingAccount, Invoice
from shared.models.base import utcnow
from shared.settings import Settings

# The plan of an account that never subscribed.
FREE_PLAN = "free"
# Stripe's subscription states that matter here; the others are stored as Stripe names them.
SUBSCRIPTION_INACTIVE, SUBSCRIPTION_CANCELED = "inactive", "canceled"
# Stripe states in which the subscription's plan is granted.
ENTITLED_STATES = frozenset({"active", "trialing", "past_due"})


@dataclass(frozen=True)
class Plan:
    name: str
    price_id: str | None
    monthly_generations: int
    concurrent_jobs: int
    monthly_tokens: int


def plans(settings: Settings) -> dict[str, Plan]:
    return {
        FREE_PLAN: Plan(FREE_PLAN, None, settings.plan_free_monthly_generations,
                        settings.plan_free_concurrent_jobs, settings.plan_free_monthly_tokens),
        "pro": Plan("pro", settings.plan_pro_price_id, settings.plan_pro_monthly_generations,
                    settings.plan_pro_concurrent_jobs, settings.plan_pro_monthly_tokens),
        "team": Plan("team", settings.plan_team_price_id, settings.plan_team_monthly_generations,
                     settings.plan_team_concurrent_jobs, settings.plan_team_monthly_tokens),
    }


def plan_for_price(settings: Settings, price_id: str | None) -> str | None:
    return next((p.name for p in plans(settings).values() if price_id and p.price_id == price_id), None)


def find_account(session: Session, user_id: uuid.UUID) -> BillingAccount | None:
    return session.scalar(select(BillingAccount).where(BillingAccount.user_id == user_id))


def account_for(session: Session, user_id: uuid.UUID, *, for_update: bool = False) -> BillingAccount:
    """The user's billing account, created (as free, without a customer) on first use."""
    query = select(BillingAccount).where(BillingAccount.user_id == user_id)
    account = session.scalar(query.with_for_update() if for_update else query)
    if account is None:
        account = BillingAccount(user_id=user_id)
        session.add(account)
        session.flush()
    return account


def account_by_customer(session: Session, customer_id: str | None) -> BillingAccount | None:
    if not customer_id:
        return None
    return session.scalar(select(BillingAccount).where(BillingAccount.stripe_customer_id == customer_id))


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _first_item(subscription: dict[str, Any]) -> dict[str, Any]:
    items = (subscription.get("items") or {}).get("data") or []
    return items[0] if items else {}


def subscription_price(subscription: dict[str, Any]) -> str | None:
    item = _first_item(subscription)
    return ((item.get("price") or {}).get("id") or (item.get("plan") or {}).get("id")
            or (subscription.get("plan") or {}).get("id"))


def apply_subscription(session: Session, account: BillingAccount, subscription: dict[str, Any], *,
                       as_of: int, settings: Settings) -> bool:
    """Mirror a subscription as Stripe described it at `as_of`; False when it is older than what we have.

    Events arrive out of order: one older than the newest applied is ignored, and a
    canceled subscription never comes back to life (Stripe starts a new one instead).
    """
    same = account.subscription_id == subscription.get("id")
    if as_of < account.subscription_watermark:
        return False
    if same and account.subscription_status == SUBSCRIPTION_CANCELED \
            and subscription.get("status") != SUBSCRIPTION_CANCELED:
        return False
    status = subscription.get("status") or SUBSCRIPTION_INACTIVE
    item = _first_item(subscription)
    account.subscription_id = subscription.get("id")
    account.subscription_status = status
    account.current_period_end = _ts(subscription.get("current_period_end") or item.get("current_period_end"))
    account.cancel_at_period_end = bool(subscription.get("cancel_at_period_end"))
    plan = plan_for_price(settings, subscription_price(subscription))
    account.plan = plan if plan and status in ENTITLED_STATES else FREE_PLAN
    account.subscription_watermark = as_of
    return True


def upsert_invoice(session: Session, account: BillingAccount, invoice: dict[str, Any], *, as_of: int) -> bool:
    """Mirror an invoice unless what we hold is newer; bumps the account's invoice version on change."""
    record = session.get(Invoice, invoice["id"])
    if record is not None and as_of < record.watermark:
        return False
    if record is None:
        record = Invoice(id=invoice["id"], user_id=account.user_id)
        session.add(record)
    record.customer_id = invoice.get("customer") or account.stripe_customer_id or ""
    record.subscription_id = invoice.get("subscription")
    record.number = invoice.get("number")
    record.status = invoice.get("status")
    record.currency = invoice.get("currency") or "usd"
    record.amount_due = int(invoice.get("amount_due") or 0)
    record.amount_paid = int(invoice.get("amount_paid") or 0)
    record.total = int(invoice.get("total") or 0)
    record.hosted_invoice_url = invoice.get("hosted_invoice_url")
    record.invoice_pdf = invoice.get("invoice_pdf")
    record.period_start = _ts(invoice.get("period_start"))
    record.period_end = _ts(invoice.get("period_end"))
    record.stripe_created = _ts(invoice.get("created")) or utcnow()
    record.watermark = as_of
    session.execute(update(BillingAccount).where(BillingAccount.user_id == account.user_id)
                    .values(invoices_version=BillingAccount.invoices_version + 1))
    return True


def list_invoices(session: Session, user_id: uuid.UUID) -> list[Invoice]:
    return list(session.scalars(select(Invoice).where(Invoice.user_id == user_id)
                                .order_by(Invoice.stripe_created.desc(), Invoice.id)))


def apply_sync(session: Session, account: BillingAccount, *, customer: dict[str, Any],
               subscriptions: list[dict[str, Any]], invoices: list[dict[str, Any]], as_of: int,
               settings: Settings) -> dict[str, Any]:
    """Replace the mirror with what Stripe reports now."""
    account.customer_deleted = bool(customer.get("deleted"))
    current = _current_subscription(subscriptions)
    if current is not None:
        apply_subscription(session, account, current, as_of=as_of, settings=settings)
    changed = sum(upsert_invoice(session, account, invoice, as_of=as_of) for invoice in invoices)
    account.synced_at = utcnow()
    return {"subscription": current.get("id") if current else None, "status": account.subscription_status,
            "plan": account.plan, "invoices": len(invoices), "invoices_updated": changed}


def _current_subscription(subscriptions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The entitled subscription if any, else the most recent one."""
    ranked = sorted(subscriptions, key=lambda s: (s.get("status") in ENTITLED_STATES, s.get("created") or 0))
    return ranked[-1] if ranked else None
