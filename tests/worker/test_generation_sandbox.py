"""Hostile generated code on a real worker: the job fails saying why, and the worker carries on."""
from __future__ import annotations

import json
import uuid

import pytest

from shared.generator import PROVIDERS, EmbeddedProvider, Plan
from shared.sandbox import Sandbox
from shared.settings import load_settings
from tests.conftest import IN_CI
from tests.jobs_helpers import SMALL_SPEC, new_project, submit, wait_for_job
from tests.shared.test_sandbox import host_processes_with

MARKER = f"devora-worker-loop-{uuid.uuid4().hex}"
SECRET = "sk_live_" + uuid.uuid4().hex
ESCAPEE = ("import os, signal\\nos.setsid()\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
           "if os.fork():\\n    os._exit(0)\\nwhile True:\\n    pass\\n")
HOSTILE_TESTS = {
    "loop": f"""import subprocess, sys, unittest


class Loop(unittest.TestCase):
    def test_never_ends(self):
        subprocess.Popen([sys.executable, "-c", "{ESCAPEE}", "{MARKER}"])
        while True:
            pass
""",
    "secret": """import json, os, unittest


class Steal(unittest.TestCase):
    def test_reads_the_worker_secrets(self):
        print("ENVIRONMENT " + json.dumps(dict(os.environ)), flush=True)
        self.assertIn("STRIPE_API_KEY", os.environ)
""",
}


class HostileProvider(EmbeddedProvider):
    """A provider whose output for a spec described as `hostile:<kind>` carries a hostile test."""

    name = "hostile"

    def generate(self, plan: Plan, run) -> dict[str, str]:
        files = super().generate(plan, run)
        description = plan.spec.description or ""
        if description.startswith("hostile:"):
            files["tests/test_hostile.py"] = HOSTILE_TESTS[description.removeprefix("hostile:")]
        return files

    def repair(self, plan, files, report, run) -> dict[str, str]:
        return dict(files)


@pytest.fixture
def settings_overrides() -> dict:
    return {"generation_provider": "hostile", "job_validate_timeout_seconds": 4, "job_max_repairs": 0}


@pytest.fixture(autouse=True)
def hostile_provider(monkeypatch):
    # The worker validates in the sandbox its environment's settings describe: it must be a real one.
    status = Sandbox.from_settings(load_settings()).status()
    if status.state != "available":
        if IN_CI:
            pytest.fail(f"the sandbox is required under CI: {status.detail}")
        pytest.skip(f"bubblewrap sandbox not available here: {status.detail}")
    monkeypatch.setitem(PROVIDERS, "hostile", HostileProvider)
    monkeypatch.setenv("STRIPE_API_KEY", SECRET)


def hostile_spec(kind: str) -> dict:
    return {**SMALL_SPEC, "description": f"hostile:{kind}"}


def test_hostile_jobs_fail_with_the_reason_and_the_worker_carries_on(client, auth_headers, worker):
    project_id = new_project(client, auth_headers)

    looping = wait_for_job(client, auth_headers, submit(client, auth_headers, project_id, hostile_spec("loop"))
                           .get_json()["id"])
    assert looping["status"] == "failed", looping
    assert looping["error"]["type"] == "GenerationFailed"
    assert looping["error"]["message"] == ("the generated project failed validation after 0 repair attempt(s): "
                                           "tests timed out after 4 seconds")
    assert host_processes_with(MARKER) == [], "the escaped busy loop died with its sandbox"

    stealing = wait_for_job(client, auth_headers, submit(client, auth_headers, project_id, hostile_spec("secret"))
                            .get_json()["id"])
    assert stealing["status"] == "failed", stealing
    assert stealing["error"]["message"].startswith("the generated project failed validation after 0 repair "
                                                   "attempt(s): tests failed (FAILED (failures=1))")
    assert SECRET not in json.dumps(stealing)

    fine = wait_for_job(client, auth_headers, submit(client, auth_headers, project_id).get_json()["id"])
    assert fine["status"] == "succeeded", fine
    assert fine["result"]["summary"]["validation_passed"] and fine["result"]["summary"]["provider"] == "hostile"
    files = client.get(f"/api/v2/projects/{project_id}/files", headers=auth_headers).get_json()["items"]
    assert "tests/test_hostile.py" not in {f["path"] for f in files}, "failed jobs wrote nothing"
