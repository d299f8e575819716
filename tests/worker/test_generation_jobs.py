"""Generation jobs end to end: HTTP submission, a real worker on real Redis, the database."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from sqlalchemy import func, select

from shared.events import EventStore
from shared.models import ProjectFile
from shared.settings import PROJECT_ROOT
from tests.jobs_helpers import SMALL_SPEC, THREE_ENTITY_SPEC, big_spec, new_project, submit, wait_for_job


def test_fullstack_job_writes_a_project_whose_own_tests_pass(client, auth_headers, worker, tmp_path):
    project_id = new_project(client, auth_headers)
    job = submit(client, auth_headers, project_id, THREE_ENTITY_SPEC).get_json()
    finished = wait_for_job(client, auth_headers, job["id"])
    assert finished["status"] == "succeeded", finished
    assert finished["progress"] == {"percent": 100, "stage": "succeeded", "detail": None, "tokens": 0}
    assert finished["usage"] is None, "the embedded provider calls no model"
    assert finished["attempts"] == 1
    summary = finished["result"]["summary"]
    assert summary["entity_count"] == 3 and summary["validation_passed"] and summary["tests_run"] > 0
    listed = {f["path"] for f in client.get(f"/api/v2/projects/{project_id}/files", headers=auth_headers)
              .get_json()["items"]}
    assert listed == set(finished["result"]["files"])
    assert {"bookshop/app.py", "tests/test_api.py", "README.md", "static/index.html"} <= listed

    archive = client.get(f"/api/v2/projects/{project_id}/archive", headers=auth_headers)
    zipfile.ZipFile(io.BytesIO(archive.data)).extractall(tmp_path)
    root = tmp_path / "target"
    run = subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "OK" in run.stderr


def test_agentic_job_reports_its_stages(client, make_user, worker, db, settings):
    user, auth_headers = make_user()
    project_id = new_project(client, auth_headers)
    job = client.post("/api/v2/generate/agentic", json={"project_id": project_id, "spec": big_spec(6, 20)},
                      headers=auth_headers).get_json()
    seen = set()
    while True:
        polled = client.get(f"/api/v2/jobs/{job['id']}", headers=auth_headers).get_json()
        seen.add((polled["progress"]["stage"], polled["progress"]["detail"]))
        if polled["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    assert polled["status"] == "succeeded", polled
    assert ("validate", "running the tests") in seen, "the test run is visible on the poll while it lasts"
    assert polled["result"]["summary"]["kind"] == "agentic"
    assert not any(path.startswith("static/") for path in polled["result"]["files"]), "agentic writes no frontend"

    store = EventStore.from_settings(settings)
    published = [event for event in store.read_after(user.id, count=10_000) if event.job_id == job["id"]]
    store.redis.close()
    steps = [(event.payload["stage"], event.payload.get("detail")) for event in published
             if event.type == "job.progress"]
    assert ("validate", "running the tests") in steps, "and on the stream"
    files = [(event.payload["path"], event.payload["action"]) for event in published if event.type == "job.file"]
    assert files == [(path, action) for path in sorted(polled["result"]["files"])
                     for action in ("started", "generated")], "each file started, then generated"
    # Every file event comes before the outcome, and only the outcome says the files were stored.
    assert published[-1].type == "job.succeeded" and published[-1].payload == {"files": len(files) // 2}


def test_a_redelivered_task_for_a_finished_job_does_nothing(client, auth_headers, worker, celery_app, db):
    project_id = new_project(client, auth_headers)
    job = submit(client, auth_headers, project_id).get_json()
    done = wait_for_job(client, auth_headers, job["id"])
    celery_app.send_task("generation.run", args=[job["id"]])
    celery_app.send_task("generation.run", args=[job["id"]])
    time.sleep(1.0)
    again = client.get(f"/api/v2/jobs/{job['id']}", headers=auth_headers).get_json()
    assert again == done
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ProjectFile)) == len(done["result"]["files"])


def test_cancel_a_running_job_stops_it_and_leaves_the_project_untouched(client, auth_headers, worker):
    project_id = new_project(client, auth_headers)
    client.put(f"/api/v2/projects/{project_id}/files/KEEP.md", json={"content": "mine"}, headers=auth_headers)
    job = submit(client, auth_headers, project_id, big_spec()).get_json()
    wait_for_job(client, auth_headers, job["id"], statuses=("running",))
    response = client.post(f"/api/v2/jobs/{job['id']}/cancel", headers=auth_headers)
    assert response.status_code == 202 and response.get_json()["cancel_requested"] is True
    finished = wait_for_job(client, auth_headers, job["id"])
    assert finished["status"] == "canceled"
    files = client.get(f"/api/v2/projects/{project_id}/files", headers=auth_headers).get_json()["items"]
    assert [f["path"] for f in files] == ["KEEP.md"]
    assert client.post(f"/api/v2/jobs/{job['id']}/cancel", headers=auth_headers).status_code == 409


def test_jobs_watch_follows_a_job_to_its_end(client, auth_headers, worker, settings):
    job = submit(client, auth_headers, new_project(client, auth_headers), SMALL_SPEC).get_json()
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    watch = subprocess.run([str(Path(sys.executable).parent / "devora"), "jobs", "watch", job["id"],
                            "--interval", "0.1"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert watch.returncode == 0, watch.stderr
    assert "succeeded after 1 attempt(s)" in watch.stdout
    missing = subprocess.run([str(Path(sys.executable).parent / "devora"), "jobs", "watch",
                              "00000000-0000-0000-0000-000000000000"], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "no job" in missing.stderr
