"""Job-pipeline benchmark: the service and its worker beside the same-work anchor and bare Celery, same run.

    python bench/jobs.py [--seconds 10] [--rounds 3] [--rate 5] [--jobs 40] [--database-url URL]

The service, ../shared/anchors/bare_api.py (a plain job API: JWT, one Flask-Limiter limit, one SELECT with
ETag/304, or INSERT + COMMIT + Celery send) and bare_web.py run under gunicorn -w 2 on one embedded Redis
and the same kind of database. Prints, per round and overall (medians), service / anchor for:
  a. submissions/s: wrk POST /api/v2/generate/agentic vs bare_api's POST /jobs
  b. polls/s: GET /api/v2/jobs/<id> answered 200, and 304 (If-None-Match), vs bare_api's same polls
  c. queue latency p50/p99, created -> started, at --rate submissions/s for --seconds, vs bare Celery's
     send -> done of a no-op sent at the same pace
and each against bare_web's /hello and /limited, then absolute figures, and once
  d. jobs/s end to end for --jobs jobs of the smallest valid spec, beside bare Celery's no-op tasks/s.
(a) runs last, with no worker up, so the thousands of jobs it leaves queued never reach (c) or (d).
Exits 1 when a correctness check fails (a poll that is not the job or not a 304, a job that did not
succeed, an accepted job never handed to the broker), not when an aim is missed.
A --database-url names a PostgreSQL database that must not exist yet: it is created and dropped here.
Needs wrk on PATH and ../shared/anchors (or ANCHORS_DIR).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    ANCHORS, BIN, ROOT, BareApi, Checks, Figures, anchor_database, bare_api, celery_worker, embedded_redis,
    fresh_database, gunicorn, post_script, wrk,
)
from tests.peers.processes import free_port, running, serve  # noqa: E402

if TYPE_CHECKING:
    from shared.db import Database
    from shared.settings import Settings

SPEC = {"app_name": "notes", "entities": [{"name": "Note", "fields": [{"name": "title", "type": "string"}]}]}
QUEUES = ("generation", "billing", "webhooks", "default")
UNLIMITED = "10000000 per minute"
# Plan quotas high enough that the bench's one free-plan user is never refused (extra settings are ignored).
PLAN_LIMITS = {"PLAN_FREE_MONTHLY_GENERATIONS": "1000000000", "PLAN_FREE_CONCURRENT_JOBS": "1000000000"}
ANCHOR_TASKS = 2000  # bare Celery end-to-end run: long enough (~3 s) to dwarf its start-up


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    figure: str
    service: float
    anchor: float
    anchor_figure: str


@dataclass(frozen=True)
class Service:
    """How to reach the running service as the seeded user."""

    url: str
    token: str
    project_id: str

    @property
    def headers(self) -> dict[str, str]:
        """The bearer token header."""
        return {"Authorization": f"Bearer {self.token}"}

    def body(self) -> dict[str, Any]:
        """A generation request for the smallest valid spec."""
        return {"project_id": self.project_id, "spec": SPEC}


def settings_for(database_url: str, redis_url: str, secret: str) -> Settings:
    """The service's settings as the bench process needs them (no `.env`)."""
    from shared.settings import Settings

    return Settings(database_url=database_url, redis_url=redis_url, secret_key=secret, _env_file=None)


def seed(settings: Settings) -> tuple[str, str]:
    """Migrate, create a user with one project; return a bearer token and the project id."""
    from cli import upgrade_database
    from shared import accounts, projects
    from shared.db import Database
    from shared.security import TokenService

    os.environ["DATABASE_URL"] = settings.database_url
    upgrade_database()
    db = Database(settings)
    with db.transaction() as session:
        user = accounts.register(session, "bench@example.com", "Bench-pass-1", "Bench")
        project = projects.create_project(session, user.id, "jobs-bench", "benchmark project")
        token = TokenService(settings).issue(user.id, user.role, uuid.uuid4())  # a login never logged out
        project_id = str(project.id)
    db.engine.dispose()
    return token, project_id


def submit(http: requests.Session, service: Service) -> dict[str, Any]:
    """Submit one fullstack generation job; return the job as answered."""
    response = http.post(f"{service.url}/api/v2/generate/fullstack", json=service.body(), headers=service.headers,
                         timeout=30)
    if response.status_code != 202:
        raise RuntimeError(f"submission answered {response.status_code}: {response.text[:500]}")
    return response.json()


def paced(rate: float, count: int, send: Callable[[], None]) -> float:
    """Call `send` `count` times at `rate` per second; return the rate achieved."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send()
    elapsed = time.perf_counter() - start
    return (count - 1) / elapsed if count > 1 and elapsed > 0 else rate


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, interpolated between samples."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def job_rows(db: Database, ids: list[str], timeout: float = 120) -> list[Any]:
    """Wait until every job in `ids` has finished; return their rows, or fail naming the failed or stuck ones."""
    from sqlalchemy import select

    from shared.models import Job
    from shared.jobs.states import FINISHED

    wanted = [uuid.UUID(i) for i in ids]
    deadline = time.monotonic() + timeout
    while True:
        with db.sessions() as session:
            rows = session.execute(select(Job.status, Job.progress_stage, Job.created_at, Job.sent_at, Job.started_at,
                                          Job.finished_at, Job.error_type, Job.error_message)
                                   .where(Job.id.in_(wanted))).all()
        unfinished = Counter(f"{row.status}/{row.progress_stage}" for row in rows if row.status not in FINISHED)
        if len(rows) == len(wanted) and not unfinished:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs unfinished after {timeout:.0f} s (status/stage: count): {dict(unfinished)}")
        time.sleep(0.25)  # the figures come from the rows' own timestamps, so polling need not be fine
    failed = [row for row in rows if row.status != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(rows)} jobs did not succeed, e.g. "
                           f"{failed[0].status}: {failed[0].error_type}: {failed[0].error_message}")
    return rows


def span(later: datetime, earlier: datetime) -> float:
    """Seconds from `earlier` to `later`."""
    return (later - earlier).total_seconds()


def measure_polling(service: Service, anchor: BareApi, web_url: str, rounds: list[dict[str, float]],
                    args: argparse.Namespace, checks: Checks) -> None:
    """(b) wrk GET of a queued job, answered 200 and answered 304, each round beside bare_api's same polls."""
    with requests.Session() as http:
        job = submit(http, service)
        job_url = f"{service.url}/api/v2/jobs/{job['id']}"
        first = http.get(job_url, headers=service.headers, timeout=10)
        etag = first.headers.get("ETag", "")
        again = http.get(job_url, headers={**service.headers, "If-None-Match": etag}, timeout=10)
    checks.expect((first.status_code, again.status_code) == (200, 304) and first.json().get("id") == job["id"],
                  f"polling answered {first.status_code} then {again.status_code}, expected the job then 304")
    checks.expect("RateLimit" in first.headers and "X-RateLimit-Remaining" in again.headers,
                  "a poll carries no rate-limit headers")
    paths = [("poll 200", job_url, service.headers),
             ("bare_api poll 200", anchor.poll_url, anchor.headers),
             ("poll 304", job_url, {**service.headers, "If-None-Match": etag}),
             ("bare_api poll 304", anchor.poll_url, {**anchor.headers, "If-None-Match": anchor.etag}),
             ("bare_web /hello", f"{web_url}/hello", {}),
             ("bare_web /limited", f"{web_url}/limited", {})]
    for _name, url, headers in paths:
        wrk(url, seconds=1, headers=headers)
    for measured in rounds:
        # Service and anchor figures alternate, so drift affects both alike.
        for name, url, headers in paths:
            measured[name] = wrk(url, seconds=args.seconds, headers=headers)


def measure_submission(service: Service, anchor: BareApi, rounds: list[dict[str, float]],
                       args: argparse.Namespace, tmp: Path, db: Database, checks: Checks) -> str:
    """(a) wrk POST of a generation job vs bare_api's POST /jobs; nothing consumes the queues."""
    ours = post_script(tmp / "submit.lua", json.dumps(service.body()),
                       {**service.headers, "Content-Type": "application/json"})
    theirs = post_script(tmp / "anchor-submit.lua", json.dumps({"spec": SPEC}),
                         {**anchor.headers, "Content-Type": "application/json"})
    submit_url = f"{service.url}/api/v2/generate/agentic"
    wrk(submit_url, seconds=1, script=ours)
    wrk(anchor.submit_url, seconds=1, script=theirs)
    for measured in rounds:
        measured["submit"] = wrk(submit_url, seconds=args.seconds, script=ours)
        measured["bare_api submit"] = wrk(anchor.submit_url, seconds=args.seconds, script=theirs)
    # Every accepted job was handed to the broker (the outbox left nothing behind).
    queued, unsent = outbox_state(db)
    checks.expect(unsent == 0, f"{unsent} of {queued} submitted jobs were never handed to the broker")
    return f"(a) the user had {queued} queued jobs at the end, {unsent} of them not handed to the broker"


def pipeline_alone() -> tuple[float, float]:
    """Seconds for one generation pipeline run in this process, and the validation subprocess's part of it."""
    from shared.generator import run_pipeline

    run_pipeline(SPEC, "fullstack")  # the first run pays for imports
    start = time.perf_counter()
    result = run_pipeline(SPEC, "fullstack")
    return time.perf_counter() - start, result.report.duration_seconds


def measure_service_worker(service: Service, settings: Settings, db: Database, env: dict[str, str],
                           rounds: list[dict[str, Any]], args: argparse.Namespace, checks: Checks) -> list[str]:
    """(c) per round and (d) once, for the service with its worker up; returns where the time went."""
    from shared.taskqueue import make_producer

    producer = make_producer(settings)
    notes: list[str] = []
    with running(celery_worker("worker", QUEUES), env, ROOT, lambda: bool(producer.control.ping(timeout=0.5))), \
            requests.Session() as http:
        # Warm both worker processes; this also drains the job polled in (b).
        for _ in range(2):
            submit(http, service)
        finished(db, pending_ids(db), checks)

        for number, measured in enumerate(rounds, 1):
            ids: list[str] = []
            achieved = paced(args.rate, round(args.rate * args.seconds),
                             lambda: ids.append(submit(http, service)["id"]))
            rows = finished(db, ids, checks)
            measured["latencies"] = [span(row.started_at, row.created_at) for row in rows]
            notes.append(
                f"(c) round {number}, service at {achieved:.1f}/s: created->sent (web: commit, broker send) median "
                f"{statistics.median(span(r.sent_at, r.created_at) for r in rows) * 1000:.1f} ms; "
                f"sent->started (broker, free worker process, claim) median "
                f"{statistics.median(span(r.started_at, r.sent_at) for r in rows) * 1000:.1f} ms; "
                f"run median {statistics.median(span(r.finished_at, r.started_at) for r in rows):.2f} s")

        start = datetime.now(UTC)
        ids = [submit(http, service)["id"] for _ in range(args.jobs)]
        rows = finished(db, ids, checks)
        elapsed = span(max(row.finished_at for row in rows), start)
        busy = sum(span(row.finished_at, row.started_at) for row in rows)
        rounds[0]["jobs/s"] = args.jobs / elapsed
        notes.append(
            f"(d) service, {args.jobs} jobs in {elapsed:.1f} s: run median "
            f"{statistics.median(span(r.finished_at, r.started_at) for r in rows):.2f} s per job, "
            f"queue wait median {statistics.median(span(r.started_at, r.created_at) for r in rows):.1f} s; "
            f"the 2 worker processes were running jobs {busy / (2 * elapsed):.0%} of the time")
    return notes


def finished(db: Database, ids: list[str], checks: Checks) -> list[Any]:
    """The rows of `ids` once finished; a job that failed or never finished fails the run's checks."""
    try:
        return job_rows(db, ids)
    except RuntimeError as error:
        checks.expect(False, str(error))
        checks.finish()
        raise


def outbox_state(db: Database) -> tuple[int, int]:
    """Jobs not finished, and those of them never handed to the broker."""
    from sqlalchemy import func, select

    from shared.jobs.states import FINISHED
    from shared.models import Job

    with db.sessions() as session:
        waiting = Job.status.not_in(FINISHED)
        return (session.scalar(select(func.count()).select_from(Job).where(waiting)) or 0,
                session.scalar(select(func.count()).select_from(Job).where(waiting, Job.sent_at.is_(None))) or 0)


def pending_ids(db: Database) -> list[str]:
    """Ids of the jobs not finished yet."""
    from sqlalchemy import select

    from shared.models import Job
    from shared.jobs.states import FINISHED

    with db.sessions() as session:
        return [str(i) for i in session.scalars(select(Job.id).where(Job.status.not_in(FINISHED)))]


def measure_anchor_worker(anchor_env: dict[str, str], rounds: list[dict[str, Any]],
                          args: argparse.Namespace) -> None:
    """(c) per round and (d) once for bare Celery: send -> done of a paced no-op, and end-to-end tasks/s."""
    os.environ.update(anchor_env)  # bare_celery reads its broker URL at import
    sys.path.insert(0, str(ANCHORS))
    bare = importlib.import_module("bare_celery")
    with running(celery_worker("bare_celery"), anchor_env, ANCHORS, lambda: bool(bare.app.control.ping(timeout=0.5))):
        for result in [bare.noop.delay(-1) for _ in range(20)]:  # warm both worker processes
            result.get(timeout=30)

        for measured in rounds:
            sent: list[tuple[datetime, Any]] = []
            paced(args.rate, round(args.rate * args.seconds),
                  lambda: sent.append((datetime.now(UTC), bare.noop.delay(len(sent)))))
            latencies = []
            for at, result in sent:
                result.get(timeout=60)
                done = result.date_done
                latencies.append(span(done if done.tzinfo else done.replace(tzinfo=UTC), at))
            measured["bare latencies"] = latencies

        output = subprocess.run([str(BIN / "python"), "bare_celery.py", str(ANCHOR_TASKS)], cwd=ANCHORS,
                                env={**os.environ, **anchor_env}, capture_output=True, text=True, check=True).stdout
    rounds[0]["bare tasks/s"] = float(re.search(r"end-to-end (\d+)/s", output).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run, and the paced submissions of (c)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every figure but (d)")
    parser.add_argument("--rate", type=float, default=5.0, help="submissions per second in (c)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs submitted at once in (d)")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    from shared.db import Database

    checks = Checks()
    figures = Figures()
    rounds = [figures.new_round() for _ in range(args.rounds)]
    secret = secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory() as tmp, embedded_redis() as redis_url, \
            fresh_database(args.database_url, tmp) as database_url, anchor_database(database_url, tmp) as anchor_db:
        settings = settings_for(database_url, f"{redis_url}/0", secret)
        token, project_id = seed(settings)
        app_port, web_port = free_port(), free_port()
        env = {"REDIS_URL": f"{redis_url}/0", "DATABASE_URL": database_url, "DEVORA_ENV": "development",
               "SECRET_KEY": secret, "RATELIMIT_DEFAULT": UNLIMITED, "RATELIMIT_GENERATE_FULLSTACK": UNLIMITED,
               "RATELIMIT_GENERATE_AGENTIC": UNLIMITED, "LOG_LEVEL": "WARNING", **PLAN_LIMITS,
               # The service's gunicorn.conf.py keeps metrics files here; inside `tmp` they go with the run.
               "PROMETHEUS_MULTIPROC_DIR": f"{tmp}/metrics"}
        anchor_env = {"ANCHOR_REDIS_URL": f"{redis_url}/14"}
        service = Service(f"http://127.0.0.1:{app_port}", token, project_id)
        web_url = f"http://127.0.0.1:{web_port}"
        db = Database(settings)
        try:
            with serve(gunicorn("web:create_app()", app_port), env, ROOT, f"{service.url}/healthz"), \
                    serve(gunicorn("bare_web:app", web_port), anchor_env, ANCHORS, f"{web_url}/hello"), \
                    bare_api(redis_url, anchor_db) as anchor:
                measure_polling(service, anchor, web_url, rounds, args, checks)
                alone, validation = pipeline_alone()
                notes = measure_service_worker(service, settings, db, env, rounds, args, checks)
                measure_anchor_worker(anchor_env, rounds, args)
                notes.insert(0, measure_submission(service, anchor, rounds, args, Path(tmp), db, checks))
        finally:
            db.engine.dispose()

    ms = 1000
    for measured in rounds:
        measured["latency p50"] = statistics.median(measured["latencies"]) * ms
        measured["bare latency p50"] = statistics.median(measured["bare latencies"]) * ms
        measured["latency p99"] = percentile(measured["latencies"], 99) * ms
        measured["bare latency p99"] = percentile(measured["bare latencies"], 99) * ms
    print(f"wrk -t2 -c16 -d{args.seconds}s, {args.rounds} rounds; gunicorn -w 2 for the service and the anchors; "
          f"Celery prefork -c 2 for both; {'PostgreSQL' if args.database_url else 'SQLite'}")
    figures.print_table([
        ("poll 304 / bare_api poll 304", "poll 304", "bare_api poll 304", ">= 2.0"),
        ("poll 200 / bare_api poll 200", "poll 200", "bare_api poll 200", ">= 1.3"),
        ("POST /generate/agentic / bare_api submit", "submit", "bare_api submit", ">= 1.0"),
        (f"queue latency p50 at {args.rate:g}/s / bare Celery", "latency p50", "bare latency p50", "<= 1.5"),
        (f"queue latency p99 at {args.rate:g}/s / bare Celery", "latency p99", "bare latency p99", ""),
        ("poll 304 / /hello", "poll 304", "bare_web /hello", ""),
        ("poll 200 / /hello", "poll 200", "bare_web /hello", ""),
        ("poll 200 / /limited", "poll 200", "bare_web /limited", ""),
        ("submit / /hello", "submit", "bare_web /hello", ""),
    ])
    print()
    figures.print_absolute(["poll 200", "bare_api poll 200", "poll 304", "bare_api poll 304", "submit",
                            "bare_api submit", "bare_web /hello", "bare_web /limited"])
    figures.print_absolute(["latency p50", "bare latency p50", "latency p99", "bare latency p99"], unit="ms")
    print(f"(d) end to end, {args.jobs} jobs: {rounds[0]['jobs/s']:.1f} jobs/s; bare Celery no-op "
          f"({ANCHOR_TASKS} tasks): {rounds[0]['bare tasks/s']:.0f} tasks/s")
    print("(c) the service's latency starts when the request inserts the job row; the anchor's when the bench "
          "process sends the task (no HTTP). A no-op finishes right after it starts, so date_done - send time is "
          "the anchor's queue latency.")
    for note in notes:
        print(note)
    print(f"one pipeline run alone in the bench process (no jobs running): {alone:.2f} s, of which the validation "
          f"(the generated project's tests) {validation:.2f} s")
    checks.finish()


if __name__ == "__main__":
    main()
