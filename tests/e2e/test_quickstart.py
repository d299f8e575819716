"""The quick start: `devora run` with no Redis and no database configured brings up everything."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
import requests

from shared.settings import PROJECT_ROOT
from tests.conftest import free_port

DEVORA = str(Path(sys.executable).parent / "devora")



def wait_for(predicate, timeout: float, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what()}")


def test_run_command_starts_web_stream_worker_beat_and_flower():
    port, flower_port, events_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"REDIS_URL", "BROKER_URL", "CACHE_REDIS_URL", "RATELIMIT_STORAGE_URI", "DATABASE_URL"}}
    env.update(PORT=str(port), FLOWER_PORT=str(flower_port), EVENTS_PORT=str(events_port), PYTHONUNBUFFERED="1")
    env.pop("EVENTS_PUBLIC_URL", None)
    process = subprocess.Popen([DEVORA, "run"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    output = lambda: "".join(lines)  # noqa: E731 - read at each poll
    try:
        def healthy():
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, 90, lambda: f"/healthz; output so far:\n{output()}")
        document = requests.get(f"http://127.0.0.1:{port}/api/v2/openapi.json", timeout=5).json()
        assert document["openapi"].startswith("3.1")
        docs = requests.get(f"http://127.0.0.1:{port}/api/v2/docs/swagger", timeout=5).text
        assert "swagger-ui" in docs and "https://" not in re.sub(r"<!--.*?-->", "", docs, flags=re.S)

        redis_url = re.search(r"started embedded Redis at (\S+)", output()).group(1)
        assert redis.Redis.from_url(redis_url).ping()

        def flower_up():
            try:
                return requests.get(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=1).text == "OK"
            except requests.RequestException:
                return False

        wait_for(flower_up, 60, lambda: f"Flower; output:\n{output()}")

        # The event stream runs beside the API, reachable from the frontend's origin.
        events_url = f"http://127.0.0.1:{events_port}/api/v2/events"
        assert f"Events:  {events_url}" in output()

        def stream_preflight():
            try:
                return requests.options(events_url, timeout=1, headers={
                    "Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"})
            except requests.RequestException:
                return None

        preflight = wait_for(stream_preflight, 60, lambda: f"the event stream; output:\n{output()}")
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert requests.get(events_url, timeout=5).status_code == 401
        wait_for(lambda: re.search(r"worker\.\d+\s*\|.*ready", output()), 60, lambda: f"worker ready; output:\n{output()}")
        wait_for(lambda: re.search(r"beat\.\d+\s*\|.*beat: Starting", output()), 60, lambda: f"beat; output:\n{output()}")
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
