"""The quick start: `devora run` with no Redis and no database configured brings up everything."""
from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path

import redis
import requests

from shared.settings import PROJECT_ROOT
from tests.peers.processes import answers, free_port, running

DEVORA = str(Path(sys.executable).parent / "devora")


def wait_for(predicate, timeout: float, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what()}")


def test_run_command_starts_web_stream_worker_beat_and_flower(tmp_path):
    port, flower_port, events_port = free_port(), free_port(), free_port()
    unset = dict.fromkeys(["REDIS_URL", "BROKER_URL", "CACHE_REDIS_URL", "RATELIMIT_STORAGE_URI", "DATABASE_URL",
                           "EVENTS_PUBLIC_URL"])
    env = {**unset, "PORT": str(port), "FLOWER_PORT": str(flower_port), "EVENTS_PORT": str(events_port),
           "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "devora-run.log"
    output = lambda: log.read_text(errors="replace")  # noqa: E731 - read at each poll
    # Stopped as a terminal's Ctrl-C would: SIGINT to the whole group, which honcho passes on.
    with running([DEVORA, "run"], env, PROJECT_ROOT, lambda: answers(f"http://127.0.0.1:{port}/healthz"), 90,
                 log=log, stop_signal=signal.SIGINT, whole_group=True):
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        document = requests.get(f"http://127.0.0.1:{port}/api/v2/openapi.json", timeout=5).json()
        assert document["openapi"].startswith("3.1")
        docs = requests.get(f"http://127.0.0.1:{port}/api/v2/docs/swagger", timeout=5).text
        assert "swagger-ui" in docs and "https://" not in re.sub(r"<!--.*?-->", "", docs, flags=re.S)

        redis_url = re.search(r"started embedded Redis at (\S+)", output()).group(1)
        assert redis.Redis.from_url(redis_url).ping()

        wait_for(lambda: answers(f"http://127.0.0.1:{flower_port}/healthcheck", "OK"), 60, lambda: f"Flower; output:\n{output()}")
        # The event stream runs beside the API, reachable from the frontend's origin.
        events_url = f"http://127.0.0.1:{events_port}/api/v2/events"
        assert f"Events:  {events_url}" in output()

        wait_for(lambda: answers(events_url), 60, lambda: f"the event stream; output:\n{output()}")
        preflight = requests.options(events_url, timeout=5, headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"})
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert requests.get(events_url, timeout=5).status_code == 401
        wait_for(lambda: re.search(r"worker\.\d+\s*\|.*ready", output()), 60, lambda: f"worker ready; output:\n{output()}")
        wait_for(lambda: re.search(r"beat\.\d+\s*\|.*beat: Starting", output()), 60, lambda: f"beat; output:\n{output()}")
