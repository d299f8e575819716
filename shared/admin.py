"""What operators see and do through the admin API: counts, searches, requeues and the audit log."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from shared.accounts import normalize_email
from shared.errors import NotFound
from shared.jobs.states import WEBHOOK_SETTLED, JobStatus, WebhookStatus
from shared.models import AuditEntry, BillingAccount, Job, User, WebhookEvent
from shared.models.base import utcnow

ADMIN_ROLE = "admin"
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


@dataclass(frozen=True)
class Stats:
    users: int
    jobs_by_status: dict[str, int]
    oldest_queued_job_age_seconds: float | None
    webhook_backlog: int
    webhooks_failed: int


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    kind: str | None = None
    owner_id: uuid.UUID | None = None
    owner_email: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def stats(session: Session) -> Stats:
    """Users, jobs per state, the age of the oldest queued job and the webhook backlog."""
    by_status = dict.fromkeys(JobStatus, 0)
    by_status.update(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    oldest = session.scalar(select(func.min(Job.created_at)).where(Job.status == JobStatus.QUEUED))
    events = dict(session.execute(select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)).all())
    return Stats(
        users=session.scalar(select(func.count()).select_from(User)) or 0,
        jobs_by_status=by_status,
        oldest_queued_job_age_seconds=None if oldest is None else max(0.0, (utcnow() - oldest).total_seconds()),
        webhook_backlog=sum(count for status, count in events.items() if status not in WEBHOOK_SETTLED),
        webhooks_failed=events.get(WebhookStatus.FAILED, 0),
    )


def search_users(session: Session, q: str | None, *, page: int, per_page: int) -> tuple[list[User], int]:
    """Users whose email or name contains `q` (any case), newest first."""
    statement = select(User)
    if q:
        statement = statement.where(User.email.icontains(q, autoescape=True)
                                    | User.full_name.icontains(q, autoescape=True))
    return _page(session, statement.order_by(User.created_at.desc(), User.id), page, per_page)


def list_jobs(session: Session, criteria: JobFilter, *, page: int,
              per_page: int) -> tuple[list[tuple[Job, str]], int]:
    """Every owner's jobs matching `criteria`, newest first, each with its owner's email."""
    statement = select(Job, User.email).join(User, User.id == Job.owner_id)
    if criteria.status:
        statement = statement.where(Job.status == criteria.status)
    if criteria.kind:
        statement = statement.where(Job.kind == criteria.kind)
    if criteria.owner_id:
        statement = statement.where(Job.owner_id == criteria.owner_id)
    if criteria.owner_email:
        statement = statement.where(User.email == normalize_email(criteria.owner_email))
    if criteria.created_after:
        statement = statement.where(Job.created_at >= criteria.created_after)
    if criteria.created_before:
        statement = statement.where(Job.created_at < criteria.created_before)
    rows, total = _page(session, statement.order_by(Job.created_at.desc(), Job.id), page, per_page, scalars=False)
    return [(row[0], row[1]) for row in rows], total


def list_webhooks(session: Session, *, status: str | None, event_type: str | None, page: int,
                  per_page: int) -> tuple[list[WebhookEvent], int]:
    """Stored Stripe events, newest first, by processing state or event type."""
    statement = select(WebhookEvent)
    if status:
        statement = statement.where(WebhookEvent.status == status)
    if event_type:
        statement = statement.where(WebhookEvent.type == event_type)
    return _page(session, statement.order_by(WebhookEvent.received_at.desc(), WebhookEvent.id), page, per_page)


def stored_customer_ids(session: Session, *, page: int, per_page: int) -> tuple[list[str], int]:
    """The Stripe customer ids of our billing accounts, in a stable order."""
    statement = (select(BillingAccount.stripe_customer_id).where(BillingAccount.stripe_customer_id.is_not(None))
                 .order_by(BillingAccount.stripe_customer_id))
    return _page(session, statement, page, per_page)


def promote(session: Session, email: str) -> tuple[User, str]:
    """Give the account with this email the admin role; returns it and its previous role."""
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        raise NotFound(f"no account with email {normalize_email(email)!r}")
    previous, user.role = user.role, ADMIN_ROLE
    return user, previous


def record_audit(session: Session, actor: User | None, action: str, target_type: str, target_id: str | None,
                 details: dict[str, Any]) -> AuditEntry:
    """Add an audit entry to the caller's transaction, so it commits or rolls back with the change."""
    entry = AuditEntry(actor_id=actor.id if actor else None, actor_email=actor.email if actor else None,
                       action=action, target_type=target_type, target_id=target_id, details=details)
    session.add(entry)
    return entry


def delete_prefixed(client: Redis, prefix: str, batch_size: int = 500) -> int:
    """Delete every key starting with `prefix`, walking the keyspace with SCAN; returns how many went."""
    if not prefix:
        # Without a prefix every key in the database would match, other programs' included.
        raise ValueError("a key prefix is required")
    removed = 0
    batch: list[bytes] = []
    # SCAN, unlike KEYS, never blocks the server; UNLINK frees the memory in the background.
    for key in client.scan_iter(match=_GLOB_SPECIAL.sub(r"\\\1", prefix) + "*", count=batch_size):
        batch.append(key)
        if len(batch) >= batch_size:
            removed += client.unlink(*batch)
            batch.clear()
    if batch:
        removed += client.unlink(*batch)
    return removed


def _page(session: Session, statement: Select, page: int, per_page: int, *,
          scalars: bool = True) -> tuple[list[Any], int]:
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    paged = statement.offset((page - 1) * per_page).limit(per_page)
    rows = session.scalars(paged).all() if scalars else session.execute(paged).all()
    return list(rows), total
