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

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.billing import FREE_PLAN, Plan, find_account, plans
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
    return plans(settings)[account.plan if account else FREE_PLAN]


def usage(session: Session, user_id: uuid.UUID, settings: Settings, now: datetime | None = None) -> Usage:
    """Use of the current calendar month and jobs in flight, against the user's plan."""
    start, end = month_bounds(now or utcnow())
    generations, tokens = _month_so_far(session, user_id, start)
    active = session.scalar(select(func.count()).select_from(Job).where(*_generations_of(user_id),
                                                                        Job.status.in_(ACTIVE))) or 0
    return Usage(plan_of(session, user_id, settings), start, end, generations, active, tokens)


def take_generation(session: Session, user_id: uuid.UUID, settings: Settings, plan: Plan | None = None) -> None:
    """Count one more generation job against the plan, or refuse it with a 402 problem.

    Refused when the month's generations or model tokens are used up, or when the plan's jobs
    in flight are all running. The token budget is checked here only: jobs already in flight may
    still spend up to LLM_MAX_JOB_TOKENS each past it. The caller's transaction holds the lock
    on the month's row until it commits; a refusal rolls the count back with it.
    """
    start, end = month_bounds(utcnow())
    plan = plan or plan_of(session, user_id, settings)
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
    active = session.connection().execute(_IN_FLIGHT_UP_TO, {"user_id": user_id,
                                                             "limit": plan.concurrent_jobs}).scalar() or 0
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


# Built once: a submission runs these on every request. Core statements on the session's
# connection, as the ORM's bookkeeping would cost more than the statements themselves.
_USAGE = MonthlyUsage.__table__.c
_TAKE = (update(MonthlyUsage.__table__)
         .where(_USAGE.user_id == bindparam("owner"), _USAGE.month == bindparam("of_month"),
                _USAGE.generations < bindparam("generations_allowed"), _USAGE.tokens < bindparam("tokens_allowed"))
         .values(generations=_USAGE.generations + 1))
_MONTH_LOCKED = (select(_USAGE.generations, _USAGE.tokens)
                 .where(_USAGE.user_id == bindparam("owner"), _USAGE.month == bindparam("of_month")).with_for_update())
_IN_FLIGHT_UP_TO = select(func.count()).select_from(
    select(Job.__table__.c.id)
    .where(Job.__table__.c.owner_id == bindparam("user_id"), Job.__table__.c.kind.in_(GENERATION_KINDS),
           Job.__table__.c.status.in_(ACTIVE))
    .limit(bindparam("limit")).subquery())


def _take(session: Session, user_id: uuid.UUID, month: datetime, plan: Plan) -> bool | None:
    """Count one generation if the month has room: True, False when it has none, None without a row."""
    connection = session.connection()
    parameters = {"owner": user_id, "of_month": month, "generations_allowed": plan.monthly_generations,
                  "tokens_allowed": plan.monthly_tokens}
    if connection.execute(_TAKE, parameters).rowcount:
        return True
    # No room, or no row when the UPDATE looked (a concurrent first submission of the month may
    # have created it since): look again holding the row's lock, so the answer stays true.
    row = connection.execute(_MONTH_LOCKED, parameters).first()
    if row is None:
        return None
    if row.generations >= plan.monthly_generations or row.tokens >= plan.monthly_tokens:
        return False
    return bool(connection.execute(_TAKE, parameters).rowcount)


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
