"""Hostile generated code on a real worker: the job fails saying why, and the worker carries on.

Each case of tests/shared/test_sandbox.py that a generated project could carry (a secret read from the
environment, an endless loop, sockets, a fork bomb, writes outside the scratch directory) arrives here
as a test file of the generated project, is validated by a real worker, and must end its job as a
validation failure that names the reason; a normal job after them all still succeeds.
"""
from __future__ import annotations

import json
import os
import re
import select
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.generator import PROVIDERS, EmbeddedProvider, Plan
from shared.sandbox import Sandbox
from shared.settings import PROJECT_ROOT, load_settings
from tests.conftest import IN_CI
from tests.jobs_helpers import SMALL_SPEC, new_project, submit, wait_for_job
from tests.shared.test_sandbox import hostile, host_processes_with, writes_outside

MARKER = f"devora-worker-loop-{uuid.uuid4().hex}"
BOMB_MARKER = f"devora-worker-bomb-{uuid.uuid4().hex}"
SECRET = "sk_live_" + uuid.uuid4().hex
VALIDATION_FAILED = "the generated project failed validation after 0 repair attempt(s): "
ESCAPEE = ("import os, signal\\nos.setsid()\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
           "if os.fork():\\n    os._exit(0)\\nwhile True:\\n    pass\\n")
# Forks for ever; each process says once that a fork was refused, then keeps trying.
BOMB = ("import os, time\\nfirst = True\\nwhile True:\\n    try:\\n        os.fork()\\n"
        "    except OSError as error:\\n        if first:\\n            print('fork refused:', error, flush=True)\\n"
        "            first = False\\n        time.sleep(0.01)\\n")
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
    "bomb": hostile(f"""\
        subprocess.Popen([sys.executable, "-c", "{BOMB}", "{BOMB_MARKER}"])
        time.sleep(1.5)
        print("processes seen:", len([pid for pid in os.listdir("/proc") if pid.isdigit()]), flush=True)
        self.fail("the bomb went off")
""")["tests/test_hostile.py"],
}


def socket_test(port: int) -> str:
    """A test that passes only if it reaches a listener of the worker's host on loopback, and the outside."""
    return hostile(f"""\
        attempts = {{
            "loopback": lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2),
            "outside": lambda: socket.create_connection(("1.1.1.1", 443), timeout=2),
        }}
        reached = []
        for name, attempt in attempts.items():
            try:
                attempt().close()
                reached.append(name)
            except OSError as error:
                print(name, "refused:", error, flush=True)
        self.assertEqual(reached, list(attempts), "the network is out of reach")
""")["tests/test_hostile.py"]


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
    # Every hostile job is submitted at once: more than the default per-minute limit of fullstack generations.
    return {"generation_provider": "hostile", "job_validate_timeout_seconds": 4, "job_max_repairs": 0,
            "ratelimit_generate_fullstack": "100 per minute"}


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


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP listener of this process that accepts nothing by itself: a connection that reached
    it waits in its queue."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def hostile_spec(kind: str) -> dict:
    return {**SMALL_SPEC, "description": f"hostile:{kind}"}


def failed_validation(job: dict, reason: str) -> dict:
    """Check that `job` failed validation for `reason` (a phrase of its message); returns the attached report."""
    assert job["status"] == "failed", job
    error = job["error"]
    assert error["type"] == "GenerationFailed", error
    assert error["message"].startswith(VALIDATION_FAILED) and reason in error["message"], error["message"]
    assert error["details"]["repair_attempts"] == 0, error["details"]
    report = error["details"]["report"]
    assert not report["passed"] and report["tests_ran"], report
    assert error["message"] == VALIDATION_FAILED + report["message"], "the details carry the same reason"
    return report


def test_hostile_jobs_fail_with_the_reason_and_the_worker_carries_on(client, auth_headers, worker, settings,
                                                                     listener, tmp_path, monkeypatch):
    port = listener.getsockname()[1]
    monkeypatch.setitem(HOSTILE_TESTS, "socket", socket_test(port))
    name = f"devora-pwned-{uuid.uuid4().hex}"
    outside = [str(PROJECT_ROOT / name), f"/tmp/{name}", str(Path.home() / name), str(tmp_path / name), f"/{name}",
               f"/usr/{name}", f"/etc/{name}", f"/input/{name}", f"/dev/shm/{name}", f"/dev/{name}"]
    monkeypatch.setitem(HOSTILE_TESTS, "writes", writes_outside(outside)["tests/test_hostile.py"])
    project_id = new_project(client, auth_headers)

    # All at once: the worker's two threads take them in turn, and a slow one does not hold up the rest.
    job_ids = {}
    for kind in ("loop", "secret", "socket", "bomb", "writes"):
        response = submit(client, auth_headers, project_id, hostile_spec(kind))
        assert response.status_code == 202, response.get_json()
        job_ids[kind] = response.get_json()["id"]
    jobs = {kind: wait_for_job(client, auth_headers, job_id) for kind, job_id in job_ids.items()}

    looping = failed_validation(jobs["loop"], "tests timed out after 4 seconds")
    assert looping["message"] == "tests timed out after 4 seconds" and looping["timed_out"]
    assert host_processes_with(MARKER) == [], "the escaped busy loop died with its sandbox"

    stealing = failed_validation(jobs["secret"], "tests failed (FAILED (failures=1))")
    assert stealing["message"].startswith("tests failed (FAILED (failures=1))")
    assert SECRET not in json.dumps(jobs["secret"])

    connecting = failed_validation(jobs["socket"], "the sandbox has no network")
    assert connecting["message"].startswith("tests failed (FAILED (failures=1))")
    assert "loopback refused: [Errno 111] Connection refused" in connecting["output_tail"]
    assert "outside refused: [Errno 101] Network is unreachable" in connecting["output_tail"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing reached the listener
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert select.select([listener], [], [], 5)[0], "the listener was live: this process itself gets through"
    listener.accept()[0].close()

    limit = settings.sandbox_max_processes
    bombing = failed_validation(jobs["bomb"], f"the limit of {limit} processes was reached")
    assert bombing["message"].startswith("tests failed (FAILED (failures=1))")
    assert "fork refused: [Errno 11] Resource temporarily unavailable" in bombing["output_tail"]
    seen = int(re.search(r"processes seen: (\d+)", bombing["output_tail"]).group(1))
    assert limit // 2 < seen <= limit, seen
    assert host_processes_with(BOMB_MARKER) == [], "every process of the bomb is gone"

    writing = failed_validation(jobs["writes"], "only the project's scratch directory is writable")
    assert writing["message"].startswith("tests failed (FAILED (failures=1))")
    assert "inside writes: ok" in writing["output_tail"]
    assert writing["output_tail"].count("refused: ") == len(outside)
    assert f"refused: /input/{name} OSError Read-only file system" in writing["output_tail"]
    for path in outside:
        assert not os.path.exists(path), path

    fine = wait_for_job(client, auth_headers, submit(client, auth_headers, project_id).get_json()["id"])
    assert fine["status"] == "succeeded", fine
    assert fine["result"]["summary"]["validation_passed"] and fine["result"]["summary"]["provider"] == "hostile"
    files = client.get(f"/api/v2/projects/{project_id}/files", headers=auth_headers).get_json()["items"]
    assert "tests/test_hostile.py" not in {f["path"] for f in files}, "failed jobs wrote nothing"
