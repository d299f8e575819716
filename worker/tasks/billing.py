"""billing.sync_customer and billing.reconcile: the local mirror refreshed from Stripe."""
from __future__ import annotations

import logging
import time

from celery import shared_task
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import billing, jobs
from shared.integrations.stripe_gateway import StripeGateway, StripeTransient
from shared.models import BillingAccount, Job, User
from shared.outbox import hand_over
from worker.context import database_of, gateway_of, settings_of
from worker.jobrunner import JobContext, JobOutcome, run_job

logger = logging.getLogger(__name__)
TASK = "billing.sync_customer"
# Rate limits, connection errors and 5xx come back; card, request, auth and idempotency errors do not.
TRANSIENT = (StripeTransient, OperationalError)


@shared_task(name=TASK, bind=True)
def sync_customer(self, job_id: str) -> None:
    """Refresh one user's customer, subscription and invoices from Stripe."""
    gateway = gateway_of(self.app)
    run_job(self, job_id, lambda ctx: sync(ctx, gateway), TRANSIENT)


def sync(ctx: JobContext, gateway: StripeGateway) -> JobOutcome:
    """Read everything from Stripe first; write the mirror only in the job's success transaction."""
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


@shared_task(name="billing.reconcile", bind=True)
def reconcile(self) -> int:
    """Queue a sync for every customer with a subscription (daily), skipping users with one in flight."""
    settings, db = settings_of(self.app), database_of(self.app)
    created = []
    with db.transaction() as session:
        owners = session.scalars(select(BillingAccount.user_id).where(
            BillingAccount.subscription_id.is_not(None), BillingAccount.customer_deleted.is_(False))).all()
        busy = set(session.scalars(select(Job.owner_id).where(
            Job.kind == "billing_sync", Job.status.in_(billing.ACTIVE_JOB_STATES))))
        for owner_id in owners:
            if owner_id not in busy:
                job, _ = jobs.submit(session, owner_id=owner_id, kind="billing_sync", task_name=TASK, payload={},
                                     project_id=None, max_attempts=settings.job_max_attempts)
                created.append(job.id)
    for job_id in created:
        hand_over(self.app, db, TASK, job_id)
    logger.info("reconcile: %s billing sync job(s) queued", len(created))
    return len(created)
