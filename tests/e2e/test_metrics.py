"""/metrics under gunicorn with two workers: counters add up across processes, gauges follow the data."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from shared.settings import PROJECT_ROOT
from tests.jobs_helpers import SMALL_SPEC
from tests.peers.processes import free_port, serve

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
TOKEN = "metrics-test-token"


@pytest.fixture
def server(settings, app, tmp_path):
    port = free_port()
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "DEVORA_ENV": "test", "SECRET_KEY": settings.secret_key.get_secret_value(), "METRICS_TOKEN": TOKEN,
           "METRICS_ALLOWED_NETWORKS": "", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
           "PLAN_FREE_CONCURRENT_JOBS": "50", "LOG_LEVEL": "WARNING"}
    url = f"http://127.0.0.1:{port}"
    with serve([GUNICORN, "-w", "2", "-b", f"127.0.0.1:{port}", "web:create_app()"], env, PROJECT_ROOT,
               f"{url}/healthz", log=tmp_path / "gunicorn.log"):
        yield url, tmp_path / "metrics"


def counter_files(metrics_dir: Path) -> set[str]:
    return {p.name for p in metrics_dir.iterdir() if p.name.startswith("counter_")}


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    response = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(values, name, **labels) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_and_gauges_move_by_the_traffic_sent(server, make_user):
    url, metrics_dir = server
    _, headers = make_user()
    project = requests.post(f"{url}/api/v2/projects", json={"name": "m"}, headers=headers, timeout=10).json()
    before = scrape(url)

    sent = 0
    # New connections until both workers have answered some (each keeps its own file).
    while sent < 20 or len(counter_files(metrics_dir)) < 2:
        assert requests.get(f"{url}/api/v2/auth/me", headers={**headers, "Connection": "close"}, timeout=10).ok
        sent += 1
        assert sent < 500, "only one worker ever answered"
    for _ in range(3):
        assert requests.get(f"{url}/api/v2/nothing", timeout=10).status_code == 404
    requests.get(f"{url}/api/v2/projects", headers=headers, timeout=10)
    requests.get(f"{url}/api/v2/projects", headers=headers, timeout=10)
    submitted = requests.post(f"{url}/api/v2/generate/fullstack", json={"project_id": project["id"],
                                                                        "spec": SMALL_SPEC}, headers=headers,
                              timeout=10)
    assert submitted.status_code == 202
    after = scrape(url)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("devora_http_requests_total", route="/api/v2/auth/me", method="GET", status="200") == sent
    assert moved("devora_http_requests_total", route="unmatched", method="GET", status="404") == 3
    assert moved("devora_http_request_duration_seconds_count", route="/api/v2/auth/me", method="GET") == sent
    assert moved("devora_cache_requests_total", cache="projects", result="miss") == 1
    assert moved("devora_cache_requests_total", cache="projects", result="hit") == 1
    assert moved("devora_jobs_submitted_total", kind="fullstack") == 1
    assert moved("devora_jobs", kind="fullstack", state="queued") == 1
    assert moved("devora_queue_depth", queue="generation") == 1
    assert value(after, "devora_oldest_queued_job_age_seconds") >= 0


def test_metrics_without_the_token_are_refused(server):
    url, _ = server
    assert requests.get(f"{url}/metrics", timeout=10).status_code == 401
    wrong = requests.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and wrong.headers["Content-Type"] == "application/problem+json"
