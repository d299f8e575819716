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
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PrivatePostgres, fresh_database, private_postgres  # noqa: E402
from bench.drill_faults import DRILLS, NEEDS_SERVER  # noqa: E402
from bench.drill_outcome import Result, report, seconds_after, settle, tally_events, tally_jobs  # noqa: E402
from bench.drill_stack import PER_USER_PER_MINUTE, Load, Stack, now, seed  # noqa: E402

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
