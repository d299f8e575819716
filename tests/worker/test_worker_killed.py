"""A worker process killed mid-job: the job is delivered again and finishes exactly once."""
from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared.models import Job, ProjectFile
from shared.settings import PROJECT_ROOT
from tests.jobs_helpers import big_spec, new_project, submit, wait_for_job
from tests.peers.processes import running

CELERY = str(Path(sys.executable).parent / "celery")


@pytest.fixture
def worker_process(settings, app, tmp_path):
    """A prefork worker in its own process, as deployed, on the test broker and database."""
    env = {"DEVORA_ENV": "test", "DATABASE_URL": settings.database_url,
           "REDIS_URL": settings.redis_url, "BROKER_URL": settings.resolved_broker_url,
           "SECRET_KEY": settings.secret_key.get_secret_value(), "JOB_LEASE_SECONDS": str(settings.job_lease_seconds)}
    with running([CELERY, "-A", "worker", "worker", "-P", "prefork", "-c", "1", "-l", "INFO",
                  "-Q", "generation,billing,webhooks,default", "--without-gossip", "--without-mingle",
                  "-n", f"killtest-{os.getpid()}@%h"], env, PROJECT_ROOT, log=tmp_path / "worker.log") as process:
        yield process


def test_sigkilled_worker_process_job_is_redelivered_and_finishes_once(client, auth_headers, worker_process, db,
                                                                      tmp_path):
    project_id = new_project(client, auth_headers)
    job = submit(client, auth_headers, project_id, big_spec(14, 30)).get_json()
    deadline = time.monotonic() + 60
    while True:
        with db.transaction() as session:
            record = session.get(Job, uuid.UUID(job["id"]))
            status, worker = record.status, record.worker
        if status == "running" and worker:
            break
        assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
        time.sleep(0.05)
    time.sleep(0.5)  # inside the pipeline, past the claim
    child_pid = int(worker.rsplit(":", 1)[1])
    os.kill(child_pid, signal.SIGKILL)

    finished = wait_for_job(client, auth_headers, job["id"], timeout=120)
    log = (tmp_path / "worker.log").read_text()
    assert finished["status"] == "succeeded", (finished, log[-3000:])
    assert finished["attempts"] == 2, "the killed attempt is counted"
    assert "WorkerLostError" in log or "SIGKILL" in log
    with db.transaction() as session:
        written = session.scalar(select(func.count()).select_from(ProjectFile))
    assert written == len(finished["result"]["files"]), "each file written once"
