"""RabbitMQ as the broker instead of Redis: the same job runs end to end."""
from __future__ import annotations

import os

import pytest
from kombu import Connection

from shared.queues import queue_depths
from tests.conftest import IN_CI, make_settings
from tests.jobs_helpers import SMALL_SPEC, new_project, submit, wait_for_job

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def settings(database_url, redis_url):
    try:
        with Connection(RABBITMQ_URL, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:  # noqa: BLE001 - any failure to connect means no RabbitMQ here
        if IN_CI:
            pytest.fail(f"RabbitMQ is required under CI but unreachable at {RABBITMQ_URL}: {error}")
        pytest.skip(f"RabbitMQ unreachable at {RABBITMQ_URL}")
    return make_settings(database_url, redis_url, broker_url=RABBITMQ_URL)


def test_a_generation_job_runs_through_rabbitmq(client, auth_headers, worker, app):
    job = submit(client, auth_headers, new_project(client, auth_headers), SMALL_SPEC).get_json()
    finished = wait_for_job(client, auth_headers, job["id"])
    assert finished["status"] == "succeeded", finished
    depths = queue_depths(app.extensions["devora"].producer)
    assert set(depths) == {"generation", "billing", "webhooks", "default"}
    assert all(isinstance(count, int) for count in depths.values())
