"""`devora jobs watch`, run as operators run it, following the real stream or falling back to polling."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared import events as ev
from tests.peers.processes import free_port
from tests.events_helpers import new_job, set_job

DEVORA = Path(sys.executable).parent / "devora"


def watch(settings, tmp_path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "DEVORA_ENV": "test", "SECRET_KEY": settings.secret_key.get_secret_value(), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(DEVORA), "jobs", "watch", *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_watch_shows_each_step_from_the_stream_as_it_comes(stream, events, make_user, db, settings, tmp_path):
    user, _headers = make_user()
    job = new_job(db, user.id)
    watcher = watch(settings, tmp_path, str(job), "--stream-url", stream.events_url)
    try:
        # Its first line comes once it is connected and has the job's snapshot.
        assert watcher.stdout.readline().strip() == f"fullstack job {job}"
        assert watcher.stdout.readline().split() == ["0%", "queued", "queued"]
        set_job(db, job, status="running", attempts=1, progress_stage="starting")
        events.publish(user.id, job, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
        assert watcher.stdout.readline().split() == ["started", "attempt", "1", "of", "3"]
        set_job(db, job, progress_percent=40, progress_stage="writing files")
        events.publish(user.id, job, ev.JOB_PROGRESS, {"percent": 40, "stage": "writing files"})
        assert watcher.stdout.readline().split() == ["40%", "running", "writing", "files"]
        events.publish(user.id, job, ev.JOB_FILE, {"path": "app/models.py", "action": "generated"})
        assert watcher.stdout.readline().split() == ["file", "generated", "app/models.py"]
        set_job(db, job, status="succeeded", progress_percent=100, progress_stage="succeeded")
        events.publish(user.id, job, ev.JOB_SUCCEEDED, {"files": 1})
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    assert out.splitlines() == ["100%  succeeded", "succeeded after 1 attempt(s)"]
    assert "polling" not in err


def test_watch_polls_the_database_when_the_stream_cannot_be_reached(app, make_user, db, settings, tmp_path):
    user, _headers = make_user()
    job = new_job(db, user.id)
    nowhere = f"http://127.0.0.1:{free_port()}/api/v2/events"
    watcher = watch(settings, tmp_path, str(job), "--stream-url", nowhere, "--interval", "0.1")
    try:
        assert watcher.stdout.readline().strip() == f"fullstack job {job}"
        assert watcher.stdout.readline().split() == ["0%", "queued", "queued"]
        set_job(db, job, status="failed", attempts=3, error_type="Boom", error_message="it broke")
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 1
    assert "event stream unavailable" in err and "polling the database" in err
    assert "Boom: it broke" in err and out.splitlines()[-1] == "failed after 3 attempt(s)"


def test_watch_of_a_finished_job_ends_at_its_snapshot(stream, make_user, db, settings, tmp_path):
    user, _headers = make_user()
    job = new_job(db, user.id, status="canceled")
    watcher = watch(settings, tmp_path, str(job), "--stream-url", stream.events_url)
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 1, err
    assert out.splitlines()[1:] == ["  0%  canceled  canceled", "canceled after 0 attempt(s)"]
