"""Broker down at submission: the job is accepted and waits; once the broker is back the sweep sends it."""
from __future__ import annotations

import logging
import uuid

import pytest
from celery.contrib.testing.worker import start_worker

from shared.models import Job
from shared.taskqueue import QUEUES
from tests.conftest import make_settings, restart_valkey
from tests.jobs_helpers import new_project, submit, wait_for_job
from worker.app import create_celery


@pytest.fixture
def settings(database_url, redis_url, doomed_redis):
    return make_settings(database_url, redis_url, broker_url=doomed_redis.connection_url + "/0")


def test_job_submitted_while_the_broker_is_down_runs_once_it_is_back(client, auth_headers, settings, doomed_redis, db,
                                                                      caplog):
    project_id = new_project(client, auth_headers)
    port = doomed_redis.port
    doomed_redis.stop()
    caplog.set_level(logging.WARNING)

    response = submit(client, auth_headers, project_id)
    assert response.status_code == 202
    job = response.get_json()
    assert job["status"] == "queued"
    with db.transaction() as session:
        assert session.get(Job, uuid.UUID(job["id"])).sent_at is None, "not handed to the broker"
    assert any("stays queued for the outbox sweep" in r.getMessage() for r in caplog.records)

    revived = restart_valkey(port)
    try:
        celery_app = create_celery(settings)
        celery_app.loader.import_default_modules()
        with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False,
                          loglevel="WARNING", queues=list(QUEUES), shutdown_timeout=30):
            # What beat does every few seconds:
            celery_app.send_task("maintenance.requeue_unsent_jobs")
            finished = wait_for_job(client, auth_headers, job["id"])
            assert finished["status"] == "succeeded" and finished["attempts"] == 1
            celery_app.send_task("maintenance.requeue_unsent_jobs")
        with db.transaction() as session:
            assert session.get(Job, uuid.UUID(job["id"])).sent_at is not None
    finally:
        revived.stop()
