"""billing.sync_customer and billing.reconcile: the local mirror refreshed from Stripe."""
from __future__ import annotations

import logging
import time

from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import billing
from shared.integrations.stripe_gateway import BillingNotConfigured, StripeGateway, StripeTransient
from shared.jobs import submission
from shared.jobs.kinds import TaskName
from shared.jobs.outbox import JOBS
from shared.models import Job, User
from shared.settings import Settings
from worker.context import database_of, gateway_of, settings_of
from worker.jobrunner import JobContext, JobOutcome, run_job

logger = logging.getLogger(__name__)
# Rate limits, connection errors and 5xx come back; card, request, auth and idempotency errors do not.
TRANSIENT = (StripeTransient, OperationalError)


@shared_task(name=TaskName.BILLING_SYNC_CUSTOMER, bind=True)
def sync_customer(self, job_id: str) -> None:
    """Refresh one user's customer, subscription and invoices from Stripe."""
    gateway = gateway_of(self.app)
    run_job(self, job_id, lambda ctx: sync(ctx, gateway), TRANSIENT, refuse=billing_off)


def billing_off(settings: Settings) -> BillingNotConfigured | None:
    """Why a billing job cannot run here (queued before billing was turned off), if it cannot."""
    return None if settings.billing_enabled else BillingNotConfigured()


def sync(ctx: JobContext, gateway: StripeGateway) -> JobOutcome:
    """Read everything from Stripe first; write the mirror only in the job's success transaction."""
    if not ctx.settings.billing_enabled:
        raise BillingNotConfigured()
    with ctx.db.transaction() as session:
        account = billing.account_for(session, ctx.owner_id)
        customer_id = account.stripe_customer_id
        email = session.scalar(select(User.email).where(User.id == ctx.owner_id))
    ctx.progress(10, "customer")
    if customer_id is None:
        customer_id = gateway.create_customer(str(ctx.owner_id), email).id
        # Kept at once: Stripe forgets idempotency keys after a day, our record does not.
        with ctx.db.transaction() as session:
            billing.account_for(session, ctx.owner_id, for_update=True).stripe_customer_id = customer_id
    customer = gateway.retrieve_customer(customer_id).to_dict()
    ctx.progress(40, "subscriptions")
    subscriptions = [s.to_dict() for s in gateway.list_subscriptions(customer_id)]
    ctx.progress(70, "invoices")
    invoices = [i.to_dict() for i in gateway.list_invoices(customer_id)]
    as_of = int(time.time())
    result: dict = {"customer": customer_id}

    def write(session: Session, job: Job) -> None:
        account = billing.account_for(session, job.owner_id, for_update=True)
        result.update(billing.apply_sync(session, account, customer=customer, subscriptions=subscriptions,
                                         invoices=invoices, as_of=as_of, settings=ctx.settings))

    return JobOutcome(result=result, apply=write)


@shared_task(name=TaskName.BILLING_RECONCILE, bind=True)
def reconcile(self) -> int:
    """Queue a sync for every customer with a subscription (daily), skipping users with one in flight."""
    settings, db = settings_of(self.app), database_of(self.app)
    if not settings.billing_enabled:
        logger.info("reconcile: billing is not configured (STRIPE_API_KEY is not set); nothing to do")
        return 0
    with db.transaction() as session:
        created = [JOBS.dispatch(job) for job in submission.submit_subscriber_syncs(session, settings)]
    JOBS.hand_over_all(self.app, db, created, marked=True)
    logger.info("reconcile: %s billing sync job(s) queued", len(created))
    return len(created)
