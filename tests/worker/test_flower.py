"""Flower as operators run it: basic auth from the environment, and the worker and tasks visible in its API."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import requests

from shared.settings import PROJECT_ROOT
from tests.jobs_helpers import SMALL_SPEC, new_project, submit, wait_for_job
from tests.peers.processes import answers, free_port, running

CELERY = str(Path(sys.executable).parent / "celery")
AUTH = ("ops", "flower-secret")


@pytest.fixture
def flower(settings, tmp_path):
    port = free_port()
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "BROKER_URL": settings.resolved_broker_url, "FLOWER_BASIC_AUTH": ":".join(AUTH)}
    url = f"http://127.0.0.1:{port}"
    with running([CELERY, "-A", "worker", "flower", "--address=127.0.0.1", f"--port={port}", "--max_tasks=1000",
                  "--purge_offline_workers=60"], env, PROJECT_ROOT, lambda: answers(f"{url}/healthcheck", "OK"),
                 log=tmp_path / "flower.log"):
        yield url


def test_flower_shows_the_worker_and_a_finished_task_and_refuses_anonymous_api_calls(
        flower, worker, client, auth_headers):
    job = submit(client, auth_headers, new_project(client, auth_headers), SMALL_SPEC).get_json()
    assert wait_for_job(client, auth_headers, job["id"])["status"] == "succeeded"

    def task_seen():
        tasks = requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json()
        return [t for t in tasks.values() if t["name"] == "generation.run" and t["args"] == repr((job["id"],))
                and t["state"] == "SUCCESS"]

    deadline = time.monotonic() + 30
    while not task_seen():
        assert time.monotonic() < deadline, requests.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).text[:2000]
        time.sleep(0.3)
    # Flower learns workers from their events; a refresh also asks them over the broker.
    deadline = time.monotonic() + 30
    while True:
        workers = requests.get(f"{flower}/api/workers", params={"refresh": "true"}, auth=AUTH, timeout=10).json()
        if any(name.startswith("gen") for name in workers):
            break
        assert time.monotonic() < deadline, workers
        time.sleep(0.5)

    assert requests.get(f"{flower}/api/workers", timeout=5).status_code == 401
    assert requests.get(f"{flower}/api/tasks", auth=("ops", "wrong"), timeout=5).status_code == 401
