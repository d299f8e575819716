"""What a plan allows and what a user has used: generations and model tokens per calendar month
(UTC), and generation jobs in flight.

The month's figures live in one `MonthlyUsage` row per user and month, so neither a submission
nor the usage report counts the month's jobs. A submission takes its place by one conditional
UPDATE of that row, which is also the lock serializing the user's submissions: two at once can
never both take the last slot. The row is created, from the jobs already there, by the month's
first submission.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.billing import Plan, find_account, plans
from shared.errors import PaymentRequired
from shared.jobs.kinds import GENERATION_KINDS
from shared.jobs.states import ACTIVE
from shared.models import Job, MonthlyUsage
from shared.models.base import utcnow
from shared.settings import Settings


@dataclass(frozen=True)
class Usage:
    plan: Plan
    period_start: datetime
    resets_at: datetime
    generations_used: int
    active_jobs: int
    # Model tokens of the month's jobs, failed and canceled ones included.
    tokens_used: int

    @property
    def tokens_left(self) -> int:
        return max(0, self.plan.monthly_tokens - self.tokens_used)


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def plan_of(session: Session, user_id: uuid.UUID, settings: Settings) -> Plan:
    account = find_account(session, user_id)
    return plans(settings)[account.plan if account else "free"]


def usage(session: Session, user_id: uuid.UUID, settings: Settings, now: datetime | None = None) -> Usage:
    """Use of the current calendar month and jobs in flight, against the user's plan."""
    start, end = month_bounds(now or utcnow())
    generations, tokens = _month_so_far(session, user_id, start)
    active = session.scalar(select(func.count()).select_from(Job).where(*_generations_of(user_id),
                                                                        Job.status.in_(ACTIVE))) or 0
    return Usage(plan_of(session, user_id, settings), start, end, generations, active, tokens)


def take_generation(session: Session, user_id: uuid.UUID, settings: Settings) -> None:
    """Count one more generation job against the plan, or refuse it with a 402 problem.

    Refused when the month's generations or model tokens are used up, or when the plan's jobs
    in flight are all running. The token budget is checked here only: jobs already in flight may
    still spend up to LLM_MAX_JOB_TOKENS each past it. The caller's transaction holds the lock
    on the month's row until it commits; a refusal rolls the count back with it.
    """
    start, end = month_bounds(utcnow())
    plan = plan_of(session, user_id, settings)
    taken = _take(session, user_id, start, plan)
    if taken is None:
        _start_month(session, user_id, start)
        taken = _take(session, user_id, start, plan)
    if not taken:
        generations, tokens = _month_so_far(session, user_id, start)
        if generations >= plan.monthly_generations:
            raise PaymentRequired(
                f"the {plan.name} plan allows {plan.monthly_generations} generations a month; all are used. "
                f"The quota resets at {end.isoformat()}.",
                limit="monthly_generations", plan=plan.name, allowed=plan.monthly_generations, used=generations,
                resets_at=end.isoformat())
        raise PaymentRequired(
            f"the {plan.name} plan allows {plan.monthly_tokens} model tokens a month; {tokens} are used. "
            f"The budget resets at {end.isoformat()}.",
            limit="monthly_tokens", plan=plan.name, allowed=plan.monthly_tokens, used=tokens,
            resets_at=end.isoformat())
    # Counted under the lock just taken, and only as far as the limit: enough to refuse.
    in_flight = select(Job.id).where(*_generations_of(user_id), Job.status.in_(ACTIVE)).limit(plan.concurrent_jobs)
    active = session.scalar(select(func.count()).select_from(in_flight.subquery())) or 0
    if active >= plan.concurrent_jobs:
        raise PaymentRequired(
            f"the {plan.name} plan allows {plan.concurrent_jobs} generation job(s) at a time; wait for one to "
            "finish or cancel one.",
            limit="concurrent_jobs", plan=plan.name, allowed=plan.concurrent_jobs, used=active, resets_at=None)


def charge_tokens(session: Session, job: Any, spent: int) -> None:
    """Add `spent` model tokens of `job` (its owner_id, kind and created_at) to its owner's usage of the
    month the job was created in."""
    if spent and job.kind in GENERATION_KINDS:
        month, _ = month_bounds(job.created_at)
        # No row yet: the month's first submission will count this job's tokens when it creates it.
        session.execute(update(MonthlyUsage).where(MonthlyUsage.user_id == job.owner_id, MonthlyUsage.month == month)
                        .values(tokens=MonthlyUsage.tokens + spent))


def _take(session: Session, user_id: uuid.UUID, month: datetime, plan: Plan) -> bool | None:
    """Count one generation if the month has room: True, False when it has none, None without a row."""
    taken = session.execute(
        update(MonthlyUsage)
        .where(MonthlyUsage.user_id == user_id, MonthlyUsage.month == month,
               MonthlyUsage.generations < plan.monthly_generations, MonthlyUsage.tokens < plan.monthly_tokens)
        .values(generations=MonthlyUsage.generations + 1)
    ).rowcount
    if taken:
        return True
    exists = session.scalar(select(MonthlyUsage.generations).where(MonthlyUsage.user_id == user_id,
                                                                   MonthlyUsage.month == month))
    return None if exists is None else False


def _start_month(session: Session, user_id: uuid.UUID, month: datetime) -> None:
    """The month's row, from the jobs created in it so far (a concurrent first submission may win)."""
    generations, tokens = _count_jobs(session, user_id, month)
    try:
        with session.begin_nested():
            session.add(MonthlyUsage(user_id=user_id, month=month, generations=generations, tokens=tokens))
    except IntegrityError:
        pass


def _month_so_far(session: Session, user_id: uuid.UUID, month: datetime) -> tuple[int, int]:
    row = session.execute(select(MonthlyUsage.generations, MonthlyUsage.tokens)
                          .where(MonthlyUsage.user_id == user_id, MonthlyUsage.month == month)).first()
    return (row.generations, row.tokens) if row is not None else _count_jobs(session, user_id, month)


def _count_jobs(session: Session, user_id: uuid.UUID, month: datetime) -> tuple[int, int]:
    # One range scan of the (owner_id, created_at) index.
    used, tokens = session.execute(select(func.count(), func.coalesce(func.sum(Job.tokens_used), 0))
                                   .where(*_generations_of(user_id), Job.created_at >= month)).one()
    return used or 0, int(tokens or 0)


def _generations_of(user_id: uuid.UUID) -> tuple:
    return Job.owner_id == user_id, Job.kind.in_(GENERATION_KINDS)
