"""A long step keeps its lease alive: the heartbeat renews it, so the reaper never takes the job away."""
from __future__ import annotations

import time

import pytest

from shared.generator import PROVIDERS, EmbeddedProvider
from tests.jobs_helpers import new_project, submit, wait_for_job


class SlowProvider(EmbeddedProvider):
    """Spends several lease lengths in one step, reporting no progress meanwhile."""

    name = "slow"

    def generate(self, plan, run):
        time.sleep(5)
        return super().generate(plan, run)


@pytest.fixture
def settings_overrides(monkeypatch):
    monkeypatch.setitem(PROVIDERS, "slow", SlowProvider)
    return {"generation_provider": "slow", "job_lease_seconds": 2}


def test_a_step_longer_than_the_lease_keeps_the_job(client, auth_headers, worker, celery_app):
    job = submit(client, auth_headers, new_project(client, auth_headers)).get_json()
    wait_for_job(client, auth_headers, job["id"], statuses=("running",))
    time.sleep(4)  # two leases into the slow step
    assert celery_app.tasks["maintenance.reap_stuck_jobs"].apply().get() == {"requeued": 0, "failed": 0}
    finished = wait_for_job(client, auth_headers, job["id"])
    assert finished["status"] == "succeeded" and finished["attempts"] == 1
