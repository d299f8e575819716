"""What a drill finds afterwards: what was accepted, finished, lost or done twice, and the report."""
from __future__ import annotations

import re
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.webhooks import problem  # noqa: E402
from bench.drill_faults import Fault  # noqa: E402
from bench.drill_stack import Load, Sent, Stack, User  # noqa: E402

# Job and event states are shared.jobs.states', imported where used: loading this module imports none of
# the service. A job is done when it succeeded, an event when it was processed or ignored.
# Work accepted before a fault should be done within a minute of its end (issue 10, point 3).
LATE_SECONDS = 60


# --- outcome ---------------------------------------------------------------------------------

@dataclass
class Rows:
    """What the database holds at the end of a drill."""

    jobs: dict[str, list[Any]]  # project id -> its job rows
    events: dict[str, Any]  # Stripe event id -> row
    writes: dict[uuid.UUID, int]  # user -> content_version (base subtracted later)
    invoices_version: dict[str, int]  # customer -> the account's invoices_version
    invoice_rows: dict[str, int]  # customer -> invoice rows


def read_rows(db: Any) -> Rows:
    from sqlalchemy import func, select

    from shared.models import BillingAccount, Invoice, Job, User as UserRow, WebhookEvent

    with db.sessions() as session:
        jobs: dict[str, list[Any]] = defaultdict(list)
        for row in session.execute(select(Job.id, Job.project_id, Job.owner_id, Job.status, Job.attempts,
                                          Job.sent_at, Job.started_at, Job.finished_at, Job.progress_stage,
                                          Job.error_type)):
            jobs[str(row.project_id)].append(row)
        events = {row.stripe_event_id: row for row in session.execute(
            select(WebhookEvent.stripe_event_id, WebhookEvent.status, WebhookEvent.sent_at, WebhookEvent.attempts,
                   WebhookEvent.processed_at, WebhookEvent.error_type))}
        writes = dict(session.execute(select(UserRow.id, UserRow.content_version)).all())
        versions = dict(session.execute(select(BillingAccount.stripe_customer_id, BillingAccount.invoices_version)).all())
        rows = dict(session.execute(select(Invoice.customer_id, func.count()).group_by(Invoice.customer_id)).all())
    return Rows(jobs, events, writes, versions, rows)


def open_count(rows: Rows, load: Load) -> int:
    """Accepted jobs and events not finished yet (or without a row)."""
    from shared.jobs.states import FINISHED, WEBHOOK_SETTLED

    open_jobs = sum(1 for s in load.sent if s.kind == "job" and s.accepted
                    and not any(r.status in FINISHED for r in rows.jobs.get(s.key, [])))
    open_events = sum(1 for key in accepted_events(load)
                      if key not in rows.events or rows.events[key].status not in WEBHOOK_SETTLED)
    return open_jobs + open_events


def accepted_events(load: Load) -> set[str]:
    return {s.key for s in load.sent if s.kind in ("event", "resend") and s.accepted}


def settle(db: Any, load: Load, deadline: float) -> Rows:
    """Wait until every accepted item has finished or the deadline passed; the rows at that moment."""
    from sqlalchemy.exc import OperationalError

    while True:
        try:
            rows = read_rows(db)
        except OperationalError:  # the database may still be coming back
            time.sleep(1)
            continue
        if not open_count(rows, load) or time.monotonic() > deadline:
            return rows
        time.sleep(1)


@dataclass
class Tally:
    sent: int = 0
    accepted: int = 0
    finished: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    missing_effects: int = 0
    open_states: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    done_at: list[tuple[datetime, datetime]] = field(default_factory=list)  # (sent, finished) of accepted ones
    unacknowledged: Counter = field(default_factory=Counter)  # stored without a 2xx answer, by final state
    reruns: int = 0
    deadline_at: datetime | None = None  # when the rows were read


def tally_jobs(load: Load, rows: Rows, base: dict[uuid.UUID, int], users: list[User]) -> Tally:
    from shared.jobs.states import FINISHED, JobStatus

    t = Tally()
    sends = [s for s in load.sent if s.kind == "job"]
    t.sent, accepted = len(sends), {s.key: s for s in sends if s.accepted}
    t.accepted = len(accepted)
    for project, sent in accepted.items():
        job = next((r for r in rows.jobs.get(project, []) if str(r.id) == sent.job_id), None)
        if job is None:
            t.lost += 1
            t.open_states["row vanished"] += 1
        elif job.status == JobStatus.SUCCEEDED:
            t.finished += 1
            t.done_at.append((sent.started, job.finished_at))
        elif job.status in FINISHED:  # failed or canceled
            t.failed += 1
            t.failures[f"{job.status} {job.error_type}"] += 1
            t.done_at.append((sent.started, job.finished_at))
        else:
            t.lost += 1
            t.open_states[f"{job.status} ({'sent' if job.sent_at else 'never sent'} to the broker, stage "
                          f"{job.progress_stage}, {job.attempts} attempts)"] += 1
    for project, jobs in rows.jobs.items():
        t.duplicated += max(0, len(jobs) - 1)  # one request, one job
        t.reruns += sum(1 for j in jobs if j.attempts > 1)
        if project not in accepted:
            for job in jobs:
                t.unacknowledged[job.status] += 1
    succeeded = Counter(j.owner_id for jobs in rows.jobs.values() for j in jobs if j.status == JobStatus.SUCCEEDED)
    for user in users:
        writes = rows.writes[user.id] - base[user.id]
        t.duplicated += max(0, writes - succeeded[user.id])
        t.missing_effects += max(0, succeeded[user.id] - writes)
    return t


def tally_events(load: Load, rows: Rows) -> Tally:
    from shared.jobs.states import WEBHOOK_SETTLED, WebhookStatus

    t = Tally()
    sends = [s for s in load.sent if s.kind == "event"]
    t.sent, accepted = len(sends), {s.key: s for s in sends if s.accepted}
    t.accepted = len(accepted)
    processed = Counter()
    for event_id, sent in accepted.items():
        row = rows.events.get(event_id)
        if row is None:
            t.lost += 1
            t.open_states["row vanished"] += 1
        elif row.status in WEBHOOK_SETTLED - {WebhookStatus.FAILED}:  # processed or ignored
            t.finished += 1
            t.done_at.append((sent.started, row.processed_at))
            processed[load.customer_of[event_id]] += row.status == WebhookStatus.PROCESSED
        elif row.status == WebhookStatus.FAILED:
            t.failed += 1
            t.failures[f"failed {row.error_type}"] += 1
        else:
            t.lost += 1
            t.open_states[f"{row.status} ({'sent' if row.sent_at else 'never sent'} to the broker, "
                          f"{row.attempts} attempts)"] += 1
    for event_id, row in rows.events.items():
        if event_id not in accepted:
            t.unacknowledged[row.status] += 1
            processed[load.customer_of.get(event_id, "")] += row.status == WebhookStatus.PROCESSED
    for customer, version in rows.invoices_version.items():
        t.duplicated += max(0, version - rows.invoice_rows.get(customer, 0))  # applied more than once
        t.missing_effects += max(0, processed[customer] - rows.invoice_rows.get(customer, 0))
    return t


# --- the report ------------------------------------------------------------------------------

def seconds_after(moment: datetime, fault: Fault) -> str:
    return f"{(moment - fault.end).total_seconds():+.1f} s"


def answers_line(sends: list[Sent], fault: Fault) -> str:
    def phase(s: Sent) -> str:
        return "before" if s.started < fault.start else "during" if s.started <= fault.end else "after"

    counts = Counter((phase(s), str(s.status) if s.status else s.error) for s in sends)
    parts = []
    for name in ("before", "during", "after"):
        mine = [s for s in sends if phase(s) == name]
        if not mine:
            continue
        took = sorted((s.answered - s.started).total_seconds() for s in mine)
        codes = ", ".join(f"{code}x{n}" for (p, code), n in sorted(counts.items()) if p == name)
        parts.append(f"{name} {codes} (answer p50 {statistics.median(took) * 1000:.0f} ms, max {took[-1]:.1f} s)")
    return "; ".join(parts)


def timing_lines(label: str, t: Tally, fault: Fault) -> list[str]:
    if not t.done_at:
        return []
    if t.lost:
        return [f"  {label}: {t.lost} accepted still unfinished at the deadline "
                f"({seconds_after(t.deadline_at, fault)} after the fault's end)"]
    baseline = [(done - sent).total_seconds() for sent, done in t.done_at if sent < fault.start]
    before = [done for sent, done in t.done_at if sent <= fault.end]
    after = sorted((done - sent).total_seconds() for sent, done in t.done_at if sent > fault.end)
    line = (f"  {label}: everything accepted finished {seconds_after(max(d for _, d in t.done_at), fault)} after the "
            f"fault's end")
    if baseline:
        line += f" (before the fault, sent->finished took p50 {statistics.median(baseline):.2f} s)"
    if before:
        line += f"; all sent before its end finished {seconds_after(max(before), fault)}"
    late = sum(1 for _, done in t.done_at if (done - fault.end).total_seconds() > LATE_SECONDS)
    if late:
        line += f"; {late} finished more than {LATE_SECONDS} s after the fault's end"
    if after:
        line += f"; sent after it: sent->finished p50 {statistics.median(after):.2f} s, max {after[-1]:.2f} s"
    return [line]


def log_problems(stack: Stack) -> list[str]:
    """The warnings and errors each process logged, grouped by message with numbers and ids masked."""
    counts: Counter = Counter()
    for process in stack.processes:
        if process.log.exists():
            for line in process.log.read_text(errors="replace").splitlines():
                found = problem(line)
                if found:
                    masked = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|evt_\w+|\d+(\.\d+)?", "#", " ".join(found.split()))
                    counts[(process.name, masked[:220])] += 1
    if not counts:
        return ["  service logs: no warnings or errors"]
    lines = [f"  service logs: {sum(counts.values())} warning/error lines; by process and message:"]
    lines += [f"    {n:5d}  {name}: {message}" for (name, message), n in counts.most_common(12)]
    if len(counts) > 12:
        lines.append(f"    ... and {len(counts) - 12} other messages")
    return lines


@dataclass
class Result:
    database: str
    drill: str
    jobs: Tally | None = None
    events: Tally | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        return all(t.lost == 0 and t.duplicated == 0 and t.missing_effects == 0 for t in (self.jobs, self.events)
                   if t is not None)


def report(result: Result, load: Load, fault: Fault, t0: datetime, stack: Stack, died: list[str]) -> None:
    jobs, events = result.jobs, result.events
    resends = [s for s in load.sent if s.kind == "resend"]
    print(f"  fault at +{(fault.start - t0).total_seconds():.1f} s of the load: {fault.what}")
    print(f"  {'':10} {'sent':>6} {'accepted':>9} {'finished':>9} {'failed':>7} {'lost':>5} {'duplicated':>11} "
          f"{'missing effects':>16}")
    for label, t in (("jobs", jobs), ("webhooks", events)):
        print(f"  {label:10} {t.sent:6d} {t.accepted:9d} {t.finished:9d} {t.failed:7d} {t.lost:5d} "
              f"{t.duplicated:11d} {t.missing_effects:16d}")
    dup_answers = sum(1 for s in resends if s.accepted and s.duplicate)
    print(f"  re-sends of accepted events: {len(resends)} sent, {dup_answers} answered as duplicates, "
          f"{sum(1 for s in resends if s.accepted and not s.duplicate)} as new, "
          f"{sum(1 for s in resends if not s.accepted)} not accepted")
    print(f"  job answers: {answers_line([s for s in load.sent if s.kind == 'job'], fault)}")
    print(f"  webhook answers: {answers_line([s for s in load.sent if s.kind != 'job'], fault)}")
    samples = {f"{s.status}: {s.detail}" for s in load.sent if s.status and not s.accepted}
    for sample in list(samples)[:3]:
        print(f"    e.g. {sample[:240]}")
    for line in timing_lines("jobs", jobs, fault) + timing_lines("webhooks", events, fault):
        print(line)
    for label, t in (("jobs", jobs), ("webhook events", events)):
        if t.open_states:
            print(f"  {label} unfinished at the deadline: "
                  + "; ".join(f"{n} {state}" for state, n in t.open_states.most_common()))
        if t.failures:
            print(f"  {label} failed: " + "; ".join(f"{n} {why}" for why, n in t.failures.most_common()))
        if t.unacknowledged:
            print(f"  {label} stored without a 2xx answer (the sender saw an error or a timeout): "
                  + ", ".join(f"{n} {state}" for state, n in t.unacknowledged.most_common()))
    if jobs.reruns:
        print(f"  {jobs.reruns} job(s) took more than one attempt (a delivery died with its worker or was cut off)")
    print("  processes: " + ("; ".join(died) if died else "none exited unexpectedly"))
    for line in log_problems(stack):
        print(line)
    print(f"  RESULT: {'PASS' if result.passed else 'FAIL'}")
