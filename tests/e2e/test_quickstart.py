"""The quick start: `devora run` with no Redis and no database configured brings up everything."""
from __future__ import annotations

import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import requests

from shared.settings import PROJECT_ROOT
from tests.jobs_helpers import SMALL_SPEC
from tests.llm_helpers import BOOKSHOP_PROMPT, files_answer, implementation, spec_answer
from tests.peers.openai_fixtures import LLM_TEST_KEY, PEER_MODEL
from tests.peers.openai_peer import Reply
from tests.peers.processes import answers, free_port, running

DEVORA = str(Path(sys.executable).parent / "devora")
UNSET = ("REDIS_URL", "BROKER_URL", "CACHE_REDIS_URL", "RATELIMIT_STORAGE_URI", "DATABASE_URL", "EVENTS_PUBLIC_URL")


def wait_for(predicate, timeout: float, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what()}")


@contextmanager
def devora_run(log: Path, **variables: str) -> Iterator[tuple[str, dict[str, int], Callable[[], str]]]:
    """`devora run` with no Redis configured and `variables` set; yields the API's URL, the ports and the output."""
    ports = {"PORT": free_port(), "FLOWER_PORT": free_port(), "EVENTS_PORT": free_port()}
    env = {**dict.fromkeys(UNSET), **{name: str(port) for name, port in ports.items()}, "PYTHONUNBUFFERED": "1",
           **variables}
    output = lambda: log.read_text(errors="replace")  # noqa: E731 - read at each poll
    base = f"http://127.0.0.1:{ports['PORT']}"
    # Stopped as a terminal's Ctrl-C would: SIGINT to the whole group, which honcho passes on.
    with running([DEVORA, "run"], env, PROJECT_ROOT, lambda: answers(f"{base}/healthz"), 90,
                 log=log, stop_signal=signal.SIGINT, whole_group=True):
        yield base, ports, output


def generate_over_http(base: str, body: dict, output: Callable[[], str]) -> tuple[dict, list[str]]:
    """As a new user: a project, an agentic job for `body`, polled to its end; returns it and the project's paths."""
    api = f"{base}/api/v2"
    tokens = requests.post(f"{api}/auth/register", json={"email": f"quick-{uuid.uuid4().hex[:8]}@example.com",
                                                        "password": "Correct-Horse-9"}, timeout=10).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    project = requests.post(f"{api}/projects", json={"name": "quick"}, headers=headers, timeout=10).json()
    accepted = requests.post(f"{api}/generate/agentic", json={"project_id": project["id"], **body},
                             headers=headers, timeout=10)
    assert accepted.status_code == 202, accepted.text

    def finished():
        job = requests.get(f"{api}/jobs/{accepted.json()['id']}", headers=headers, timeout=10).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    job = wait_for(finished, 120, lambda: f"the job to finish; output:\n{output()}")
    files = requests.get(f"{api}/projects/{project['id']}/files", headers=headers, timeout=10).json()["items"]
    return job, [item["path"] for item in files]


def test_run_command_starts_web_stream_worker_beat_and_flower_and_generates_from_a_spec(tmp_path):
    with devora_run(tmp_path / "devora-run.log") as (base, ports, output):
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        document = requests.get(f"{base}/api/v2/openapi.json", timeout=5).json()
        assert document["openapi"].startswith("3.1")
        docs = requests.get(f"{base}/api/v2/docs/swagger", timeout=5).text
        assert "swagger-ui" in docs and "https://" not in re.sub(r"<!--.*?-->", "", docs, flags=re.S)

        redis_url = re.search(r"started embedded Redis at (\S+)", output()).group(1)
        assert redis.Redis.from_url(redis_url).ping()

        wait_for(lambda: answers(f"http://127.0.0.1:{ports['FLOWER_PORT']}/healthcheck", "OK"), 60,
                 lambda: f"Flower; output:\n{output()}")
        # The event stream runs beside the API, reachable from the frontend's origin.
        events_url = f"http://127.0.0.1:{ports['EVENTS_PORT']}/api/v2/events"
        assert f"Events:  {events_url}" in output()
        wait_for(lambda: answers(events_url), 60, lambda: f"the event stream; output:\n{output()}")
        preflight = requests.options(events_url, timeout=5, headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"})
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert requests.get(events_url, timeout=5).status_code == 401
        wait_for(lambda: re.search(r"worker\.\d+\s*\|.*ready", output()), 60,
                 lambda: f"worker ready; output:\n{output()}")
        wait_for(lambda: re.search(r"beat\.\d+\s*\|.*beat: Starting", output()), 60,
                 lambda: f"beat; output:\n{output()}")

        # No model settings: spec-based generation is served by the embedded provider.
        job, paths = generate_over_http(base, {"spec": SMALL_SPEC}, output)
        assert job["status"] == "succeeded" and job["result"]["summary"]["provider"] == "embedded", job
        assert "notes/app.py" in paths


def test_run_command_pointed_at_a_model_builds_a_project_from_a_prompt_alone(openai_peer, tmp_path):
    openai_peer.script(Reply(spec_answer()), Reply(files_answer(implementation())))
    with devora_run(tmp_path / "devora-run.log", DATABASE_URL=f"sqlite:///{tmp_path / 'devora.db'}",
                    GENERATION_PROVIDER="llm", LLM_BASE_URL=openai_peer.base_url, LLM_MODEL=PEER_MODEL,
                    LLM_API_KEY=LLM_TEST_KEY) as (base, _, output):
        job, paths = generate_over_http(base, {"prompt": BOOKSHOP_PROMPT}, output)
    assert job["status"] == "succeeded" and job["attempts"] == 1, job
    assert job["result"]["summary"]["provider"] == "llm" and job["result"]["spec"]["app_name"] == "bookshop"
    assert job["usage"]["total_tokens"] > 0 and "bookshop/app.py" in paths
    assert len(openai_peer.completions) == 2
