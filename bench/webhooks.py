"""Stripe webhook benchmark: signed events and their re-sends posted to the service, beside the bare anchor.

    python bench/webhooks.py [--seconds 10] [--rounds 3] [--events 20000] [--duplicates 0.3] [--database-url URL]

One user's billing account is the customer of every event, so each event is applied (an invoice is
mirrored), not ignored. The list holds --events distinct `invoice.paid` events, one invoice each, with
re-sends of recent events interleaved so that --duplicates of its entries are re-sends. It is signed the
way Stripe signs (one fresh timestamp) just before the run. wrk (2 threads, 16 connections) posts the
list in order for --seconds through a Lua script (thread i sends entries i, i+2, ...) while the
service's Celery worker runs; afterwards the bench waits (at most 120 s) until every stored event is done.
The anchor is the bare app's POST /enqueue under the same wrk script and the same bodies, with the bare
Celery worker consuming its no-op tasks as the service's worker consumes events.

Each of --rounds rounds posts a new list to the anchor, then to the service. Prints requests/s and
latency as service/anchor per round and overall (medians), then per round how the duplicates were
answered, the events stored and processed and the drain time after the load stopped, and the warnings
and errors the service logged. Ends with a FAIL line and exit status 1 unless, in every round, every
event answered as new was stored and every stored event was processed (a missed aim is not a failure).
A --database-url names a PostgreSQL database that must not exist yet: it is created and dropped here.
Needs wrk on PATH and ../shared/anchors (or ANCHORS_DIR).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    ANCHORS, ROOT, Checks, Figures, celery_worker, embedded_redis, fresh_database, gunicorn,
)
from tests.peers.processes import free_port, running, serve  # noqa: E402
from tests.peers.stripe_events import API_KEY, WEBHOOK_PATH, WEBHOOK_SECRET, sign  # noqa: E402

if TYPE_CHECKING:
    from shared.db import Database
    from shared.settings import Settings

CUSTOMER = "cus_bench"
QUEUES = ("generation", "billing", "webhooks", "default")
THREADS, CONNECTIONS = 2, 16
WARMUP_EVENTS = 1000
# A re-send repeats one of the last few new events, so some arrive while the first delivery is still in
# flight (the database's unique constraint answers them) and the rest after it (Redis answers them).
RESEND_WINDOW = 64
DRAIN_TIMEOUT = 120.0
# Stripe's signature tolerance is 300 s; the list is signed about a second before the service's run starts.
MAX_SECONDS = 240
PENDING = ("received", "processing", "retrying")

# Sends pre-signed requests read from a file of "<Stripe-Signature>\t<body>" lines (wrk args: the file and
# the thread count). Thread i (from 0) sends lines i, i + threads, ... in order, from its first again if it
# runs out, and counts what it sent, what was answered and how many answers said {"duplicate": true}.
LUA = r"""
local threads = {}

function setup(thread)
   thread:set("index", #threads)
   table.insert(threads, thread)
end

function init(args)
   local stride, line_number = tonumber(args[2]), 0
   -- wrk calls request() once on the first thread to check the script before the run and never sends
   -- that request: starting that thread at -1 keeps `sent` exact and its first entry the first one sent.
   queue, sent, answered, duplicates = {}, index == 0 and -1 or 0, 0, 0
   for line in io.lines(args[1]) do
      if line_number % stride == index then
         local tab = line:find("\t", 1, true)
         queue[#queue + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json",
                                                      ["Stripe-Signature"] = line:sub(1, tab - 1)},
                                        line:sub(tab + 1))
      end
      line_number = line_number + 1
   end
end

function request()
   local next_request = queue[sent % #queue + 1]
   sent = sent + 1
   return next_request
end

function response(status, headers, body)
   answered = answered + 1
   if body:find('"duplicate"%s*:%s*true') then
      duplicates = duplicates + 1
   end
end

function done(summary, latency, requests)
   for _, thread in ipairs(threads) do
      io.write(string.format("thread %d: sent %d answered %d duplicate %d\n", thread:get("index"),
                             thread:get("sent"), thread:get("answered"), thread:get("duplicates")))
   end
end
"""


@dataclass(frozen=True)
class Load:
    """What one wrk run measured, and what its Lua script counted."""

    rate: float
    p50_ms: float
    p99_ms: float
    sent: list[int]  # per thread, in thread order
    answered: int
    duplicates: int

    @property
    def in_flight(self) -> int:
        """Requests sent whose answer wrk never read: it stopped, or their connection failed."""
        return sum(self.sent) - self.answered


@dataclass(frozen=True)
class Stored:
    """The stored rows of the measured events."""

    ids: set[str]
    statuses: Counter[str]
    never_sent: int
    lags: list[float]  # seconds from received to processed, of each processed event
    last_processed: datetime | None


def seed(settings: Settings) -> None:
    """Migrate, and create the user whose billing account is the events' Stripe customer."""
    from cli import upgrade_database
    from shared import accounts, billing
    from shared.db import Database

    os.environ["DATABASE_URL"] = settings.database_url
    upgrade_database()
    db = Database(settings)
    with db.transaction() as session:
        user = accounts.register(session, "webhooks-bench@example.com", "Bench-pass-1", "Bench")
        billing.account_for(session, user.id).stripe_customer_id = CUSTOMER
    db.engine.dispose()


def event_body(event_id: str, invoice_id: str, created: int) -> bytes:
    """An `invoice.paid` event shaped as Stripe sends it."""
    invoice = {"id": invoice_id, "object": "invoice", "customer": CUSTOMER, "status": "paid", "currency": "usd",
               "amount_due": 1900, "amount_paid": 1900, "total": 1900, "number": f"N-{invoice_id}",
               "created": created, "hosted_invoice_url": None, "invoice_pdf": None}
    event = {"id": event_id, "object": "event", "api_version": "2026-09-30.endive", "created": created,
             "livemode": False, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
             "type": "invoice.paid", "data": {"object": invoice}}
    return json.dumps(event).encode()


def build_events(count: int, duplicates: float, prefix: str, rng: random.Random) -> list[tuple[str, bytes]]:
    """`count` distinct events as (event id, body), with re-sends of recent ones making up `duplicates` of the list."""
    resend = [False] * count + [True] * (round(count / (1 - duplicates)) - count)
    rng.shuffle(resend)
    first_new = resend.index(False)  # the list starts with a new event: a re-send needs one before it
    resend[0], resend[first_new] = resend[first_new], resend[0]
    created = int(time.time())
    events: list[tuple[str, bytes]] = []
    new: list[tuple[str, bytes]] = []
    for again in resend:
        if again:
            events.append(rng.choice(new[-RESEND_WINDOW:]))
        else:
            event_id, invoice_id = f"evt_{prefix}_{len(new):06d}", f"in_{prefix}_{len(new):06d}"
            new.append((event_id, event_body(event_id, invoice_id, created)))
            events.append(new[-1])
    return events


def write_requests(path: Path, events: list[tuple[str, bytes]]) -> Path:
    """Sign every event now and write the `<Stripe-Signature>\\t<body>` lines the Lua script reads."""
    timestamp = int(time.time())
    with path.open("wb") as out:
        for _, body in events:
            # json.dumps escapes tabs and newlines inside strings, so a body is one line without a tab.
            out.write(sign(body, WEBHOOK_SECRET, timestamp).encode() + b"\t" + body + b"\n")
    return path


def milliseconds(value: str, unit: str) -> float:
    """A wrk latency figure in milliseconds."""
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load(url: str, script: Path, requests_file: Path, seconds: int) -> Load:
    """Run wrk with the Lua script over `requests_file`; non-2xx/3xx answers and socket errors fail the run."""
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url,
            "--", str(requests_file), str(THREADS)]
    result = subprocess.run(argv, capture_output=True, text=True)
    output = result.stdout
    threads = sorted((int(i), int(s), int(a), int(d)) for i, s, a, d in
                     re.findall(r"^thread (\d+): sent (\d+) answered (\d+) duplicate (\d+)$", output, re.M))
    # A socket error loses an answer (the event may or may not be stored), as much a failure as a 5xx;
    # a Lua error shows as missing counts.
    if (result.returncode or len(threads) != THREADS or "Non-2xx or 3xx responses" in output
            or "Socket errors" in output):
        raise RuntimeError(f"errors under load at {url}:\n{output}{result.stderr}")
    latency = {q: milliseconds(value, unit)
               for q, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)}
    return Load(rate=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
                p50_ms=latency["50"], p99_ms=latency["99"], sent=[t[1] for t in threads],
                answered=sum(t[2] for t in threads), duplicates=sum(t[3] for t in threads))


def sent_events(events: list[tuple[str, bytes]], run: Load) -> tuple[list[str], bool]:
    """The event id of every request the Lua script handed to wrk, and whether a thread ran out of its share."""
    ids, wrapped = [], False
    for index, count in enumerate(run.sent):
        share = events[index::THREADS]
        ids += [share[k % len(share)][0] for k in range(count)]
        wrapped = wrapped or count > len(share)
    return ids, wrapped


def pinged(broker_url: str) -> Callable[[], bool]:
    """Whether a Celery worker on `broker_url` answers a ping."""
    from celery import Celery

    app = Celery("webhooks-bench-ping", broker=broker_url)
    return lambda: bool(app.control.ping(timeout=0.5))


def progress(db: Database) -> tuple[int, int]:
    """Stored events of the run (warm-up included), and those not yet handed over and finished."""
    from sqlalchemy import func, select

    from shared.models import WebhookEvent

    with db.sessions() as session:
        unfinished = (WebhookEvent.status.in_(PENDING)) | WebhookEvent.sent_at.is_(None)
        return (session.scalar(select(func.count()).select_from(WebhookEvent)) or 0,
                session.scalar(select(func.count()).select_from(WebhookEvent).where(unfinished)) or 0)


def wait_drained(db: Database, timeout: float) -> None:
    """Wait, for at most `timeout` seconds, until every stored event was handed over and finished and
    no new one has been stored for a second.

    When wrk stops, requests it already sent are still being served: their events are stored
    (and handed over) after the load ends. Reading the figures before they settle would catch
    such an event between its commit and its hand-over, and count it as lost.
    """
    deadline = time.monotonic() + timeout
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        stored_now, unfinished = progress(db)
        if stored_now != last:
            last, quiet_since = stored_now, time.monotonic()
        elif not unfinished and time.monotonic() - quiet_since >= 1.0:
            return
        time.sleep(0.2)


def stored(db: Database, prefix: str) -> Stored:
    """The rows of the events whose ids start with `prefix`."""
    from sqlalchemy import select

    from shared.models import WebhookEvent

    with db.sessions() as session:
        rows = session.execute(select(WebhookEvent.stripe_event_id, WebhookEvent.status, WebhookEvent.sent_at,
                                      WebhookEvent.received_at, WebhookEvent.processed_at)
                               .where(WebhookEvent.stripe_event_id.startswith(prefix, autoescape=True))).all()
    done = [row for row in rows if row.processed_at]
    return Stored(ids={row.stripe_event_id for row in rows}, statuses=Counter(row.status for row in rows),
                  never_sent=sum(1 for row in rows if row.status == "received" and row.sent_at is None),
                  lags=sorted((row.processed_at - row.received_at).total_seconds() for row in done),
                  last_processed=max((row.processed_at for row in done), default=None))


def mirror(db: Database) -> tuple[int, int, int]:
    """Events processed in the run (warm-up included), invoices mirrored, and the account's invoices_version."""
    from sqlalchemy import func, select

    from shared.models import BillingAccount, Invoice, WebhookEvent

    with db.sessions() as session:
        processed = session.scalar(select(func.count()).select_from(WebhookEvent)
                                   .where(WebhookEvent.status == "processed"))
        invoices = session.scalar(select(func.count()).select_from(Invoice))
        version = session.scalar(select(BillingAccount.invoices_version)
                                 .where(BillingAccount.stripe_customer_id == CUSTOMER))
    return processed, invoices, version


def logged(argv: list[str], log: Path) -> list[str]:
    """`argv` with its stderr, and its children's, appended to `log`."""
    # exec leaves the server itself as the process group's leader, so stopping the group stops it.
    return ["sh", "-c", 'exec "$@" 2>>"$0"', str(log), *argv]


def problem(line: str) -> str | None:
    """The level, logger and message of a warning or error log line (JSON or plain text), else None."""
    try:
        record = json.loads(line)
    except ValueError:
        found = re.search(r"\b(WARNING|ERROR|CRITICAL)\b.*|^Traceback.*", line)
        return found.group() if found else None
    if isinstance(record, dict) and record.get("level") in ("WARNING", "ERROR", "CRITICAL"):
        return f"{record['level']} {record.get('logger')}: {record.get('message')}"
    return None


def log_report(*logs: Path) -> list[str]:
    """Lines telling how many warnings and errors the service's processes logged, with the first few."""
    problems = [found for log in logs if log.exists()
                for found in map(problem, log.read_text(errors="replace").splitlines()) if found]
    if not problems:
        return ["service logs: no warnings or errors"]
    return ([f"service logs: {len(problems)} warning/error lines, the first distinct ones:"]
            + [f"  {line[:300]}" for line in list(dict.fromkeys(problems))[:5]])


@dataclass(frozen=True)
class Round:
    """One round: the anchor's and the service's load over the same list, and what the service stored."""

    events: list[tuple[str, bytes]]
    anchor: Load
    service: Load
    load_end: datetime
    rows: Stored


def run_round(db: Database, script: Path, tmp: Path, urls: tuple[str, str], events: list[tuple[str, bytes]],
              seconds: int) -> Round:
    """The anchor, then the service, each posting `events` for `seconds`; then wait until the service drained."""
    webhook_url, enqueue_url = urls
    anchor = load(enqueue_url, script, write_requests(tmp / "anchor.tsv", events), seconds)
    service = load(webhook_url, script, write_requests(tmp / "service.tsv", events), seconds)
    load_end = datetime.now(UTC)
    wait_drained(db, DRAIN_TIMEOUT)
    return Round(events, anchor, service, load_end, stored(db, events[0][0].rsplit("_", 1)[0] + "_"))


def report_round(number: int, measured: Round, checks: Checks) -> None:
    """What the Lua script counted and the service stored in one round, and its correctness checks."""
    service, rows = measured.service, measured.rows
    sent_ids, wrapped = sent_events(measured.events, service)
    distinct_sent, resent = len(set(sent_ids)), len(sent_ids) - len(set(sent_ids))
    new_answers = service.answered - service.duplicates
    processed = rows.statuses["processed"]
    print(f"round {number}: {service.answered} answered ({service.in_flight} more sent, unanswered when wrk "
          f"stopped), {service.duplicates} {{\"duplicate\": true}} ({service.duplicates / service.answered:.1%}); "
          f"sent {len(sent_ids)} requests for {distinct_sent} distinct events, {resent} re-sends "
          f"({resent / len(sent_ids):.1%})" + ("; the list ran out and was sent again (raise --events)"
                                               if wrapped else ""))
    print(f"  events: {len(rows.ids)} distinct stored, {processed} processed"
          + "".join(f", {n} {status}" for status, n in sorted(rows.statuses.items()) if status != "processed")
          + (f" ({rows.never_sent} never handed to the broker)" if rows.never_sent else ""))
    if rows.last_processed:
        drain = max(0.0, (rows.last_processed - measured.load_end).total_seconds())
        print(f"  drain: the last event was processed {drain:.2f} s after the load stopped; received -> processed "
              f"median {statistics.median(rows.lags) * 1000:.0f} ms, max {rows.lags[-1] * 1000:.0f} ms")
    checks.expect(processed == len(rows.ids),
                  f"round {number}: {len(rows.ids) - processed} of {len(rows.ids)} stored events not processed "
                  f"within {DRAIN_TIMEOUT:.0f} s of the load: {dict(rows.statuses)}")
    checks.expect(rows.ids <= set(sent_ids), f"round {number}: {len(rows.ids - set(sent_ids))} stored events "
                                             "were never sent")
    checks.expect(new_answers <= len(rows.ids) <= new_answers + service.in_flight,
                  f"round {number}: {new_answers} requests answered as new events but {len(rows.ids)} events "
                  f"stored ({service.in_flight} unanswered)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run against service and anchor")
    parser.add_argument("--rounds", type=int, default=3, help="anchor-then-service rounds, each with new events")
    parser.add_argument("--events", type=int, default=20000, help="distinct events in each round's list")
    parser.add_argument("--duplicates", type=float, default=0.3, help="share of the list that are re-sends")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    if not 1 <= args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be 1..{MAX_SECONDS}: the signatures must stay within Stripe's 300 s tolerance")
    if not 0 <= args.duplicates < 1 or args.events < THREADS or args.rounds < 1:
        parser.error(f"--duplicates must be in [0, 1), --events at least {THREADS} (one per wrk thread), "
                     "--rounds at least 1")
    # A SIGTERM then unwinds the context managers below, which stop every process started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    from shared.db import Database
    from shared.settings import Settings

    # Unique per run, so that dedup markers left in a shared Redis (BENCH_REDIS_URL) never match.
    run_id = secrets.token_hex(4)
    rng = random.Random(run_id)
    warmup = build_events(WARMUP_EVENTS, args.duplicates, f"{run_id}w", rng)
    checks, figures, rounds = Checks(), Figures(), []
    with tempfile.TemporaryDirectory() as tmp_name, embedded_redis() as redis_url, \
            fresh_database(args.database_url, tmp_name) as database_url:
        tmp = Path(tmp_name)
        settings = Settings(database_url=database_url, redis_url=f"{redis_url}/0", _env_file=None)
        seed(settings)
        db = Database(settings)
        script = tmp / "webhooks.lua"
        script.write_text(LUA)
        web_log, worker_log = tmp / "web.log", tmp / "worker.log"
        app_port, anchor_port = free_port(), free_port()
        env = {"REDIS_URL": f"{redis_url}/0", "DATABASE_URL": database_url, "DEVORA_ENV": "development",
               "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_API_KEY": API_KEY, "LOG_LEVEL": "WARNING",
               "OUTBOX_GRACE_SECONDS": "0"}
        anchor_env = {"ANCHOR_REDIS_URL": f"{redis_url}/14"}
        app_url, anchor_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{anchor_port}"
        urls = (f"{app_url}{WEBHOOK_PATH}", f"{anchor_url}/enqueue")
        # The service's logs go to files of our own, to be searched for problems after the run.
        web_argv = logged(gunicorn("web:create_app()", app_port), web_log)
        worker_argv = logged(celery_worker("worker", QUEUES), worker_log)
        try:
            with serve(web_argv, env, ROOT, f"{app_url}/healthz"), \
                    serve(gunicorn("bare_web:app", anchor_port), anchor_env, ANCHORS, f"{anchor_url}/hello"), \
                    running(worker_argv, env, ROOT, pinged(settings.resolved_broker_url)), \
                    running(celery_worker("bare_celery"), anchor_env, ANCHORS, pinged(f"{redis_url}/14")):
                load(urls[0], script, write_requests(tmp / "warmup.tsv", warmup), 1)
                load(urls[1], script, write_requests(tmp / "warmup.tsv", warmup), 1)
                wait_drained(db, DRAIN_TIMEOUT)
                for number in range(1, args.rounds + 1):
                    events = build_events(args.events, args.duplicates, f"{run_id}r{number}", rng)
                    rounds.append(run_round(db, script, tmp, urls, events, args.seconds))
                processed_total, invoices, invoices_version = mirror(db)
        except BaseException:
            # The service's own account of what went wrong (or why it did not start).
            for log in (web_log, worker_log):
                if log.exists():
                    print(f"--- end of {log.name}:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            db.engine.dispose()
        logs = log_report(web_log, worker_log)

    for measured in rounds:
        figures.new_round().update(service=measured.service.rate, anchor=measured.anchor.rate,
                                   service_p50=measured.service.p50_ms, anchor_p50=measured.anchor.p50_ms,
                                   service_p99=measured.service.p99_ms, anchor_p99=measured.anchor.p99_ms)
    print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{args.seconds}s per side and round, {args.duplicates:.0%} re-sends, "
          "each side's Celery worker consuming during its run; ratio = service / anchor")
    figures.print_table([
        (f"POST webhook ({args.duplicates:.0%} re-sends) / POST /enqueue, req/s", "service", "anchor", ">= 0.5"),
        ("latency p50 / anchor's (lower is better)", "service_p50", "anchor_p50", ""),
        ("latency p99 / anchor's (lower is better)", "service_p99", "anchor_p99", ""),
    ])
    figures.print_absolute(["service", "anchor"])
    for number, measured in enumerate(rounds, 1):
        report_round(number, measured, checks)
    print(f"billing mirror: {invoices} invoices and invoices_version {invoices_version} for {processed_total} "
          f"processed events (warm-up included)")
    print("\n".join(logs))
    checks.expect(invoices == invoices_version == processed_total,
                  f"{processed_total} processed events, but {invoices} invoices and invoices_version {invoices_version}")
    checks.finish()


if __name__ == "__main__":
    main()
