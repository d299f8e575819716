"""Generation benchmark: jobs/s end to end, and the pipeline's own time per job, embedded and through a model.

    python bench/generation.py [--idle-jobs 20] [--jobs 20] [--token-rate 2000] [--database-url URL]

For each path (the embedded templates; the model provider against the local OpenAI-compatible peer
streaming at --token-rate tokens/s), with the service's gunicorn and a prefork worker (-c 2) up:
  a. jobs/s end to end: --jobs agentic jobs submitted at once, first submission to last finish;
  b. at idle, one job at a time (--idle-jobs): the job's own time, created -> finished minus the
     model's time (what the peer spent answering that job's requests) and minus the generated tests'
     own run time ("Ran N tests in X s", measured on the same project below): p50 and p99;
  c. where the time goes: queue wait (created -> started), the pipeline run in this process against
     the same peer (validation wall time, of which the tests' own time; the model; the provider's
     client, parsing and rendering), and what the job adds around the pipeline (claim, progress and
     cancel checks on the row, charging tokens, storing the files, commit).
The embedded path is a spec request; the model path a prompt alone (a plan call, then the
implementation call). A --database-url names a PostgreSQL database that must not exist yet.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, celery_worker, embedded_redis, free_port, fresh_database, gunicorn, running, serve  # noqa: E402
from bench.jobs import PLAN_LIMITS, QUEUES, SPEC, UNLIMITED, job_rows, percentile, seed, settings_for, span  # noqa: E402
from tests.llm_helpers import files_answer, implementation  # noqa: E402
from tests.peers.openai_peer import OpenAIPeer, RecordedRequest, Reply  # noqa: E402

if TYPE_CHECKING:
    from shared.db import Database

PROMPT = "a notes API: notes with a title"
MODEL = "bench-model"
KIND = "agentic"
TEST_RUNS = 10
PIPELINE_RUNS = 10
_RAN = re.compile(r"^Ran \d+ tests? in ([\d.]+)s", re.MULTILINE)


class ScriptedModel:
    """The peer's answers: the spec for a plan request, the embedded renderer's implementation otherwise."""

    def __init__(self, token_rate: float) -> None:
        self.plan = json.dumps(SPEC)
        self.code = files_answer(implementation(SPEC, KIND))
        self.token_rate = token_rate

    def __call__(self, request: RecordedRequest) -> Reply:
        asks_plan = "response_format" in request.body
        return Reply(self.plan if asks_plan else self.code, tokens_per_second=self.token_rate)


@dataclass(frozen=True)
class Variant:
    """One way of generating: its name, the service's extra environment and the request body."""

    name: str
    env: dict[str, str]
    body: dict[str, Any]


@dataclass
class Figures:
    name: str
    jobs_per_second: float = 0.0
    own: list[float] | None = None
    queue: list[float] | None = None
    run: list[float] | None = None
    model: list[float] | None = None
    tests_own: float = 0.0
    tests_wall: float = 0.0
    pipeline: float = 0.0
    validation: float = 0.0
    pipeline_model: float = 0.0
    note: str = ""


def model_seconds(requests_: list[RecordedRequest]) -> float:
    return sum((r.finished_at or r.received_at) - r.received_at for r in requests_)


def wait_finished(db: Database, job_id: str, timeout: float = 120) -> Any:
    """The job's row once it has finished (polled finely: the idle figures wait on it one job at a time)."""
    from sqlalchemy import select

    from shared.jobs.states import FINISHED
    from shared.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.sessions() as session:
            status = session.scalar(select(Job.status).where(Job.id == uuid.UUID(job_id)))
        if status in FINISHED:
            return job_rows(db, [job_id])[0]
        time.sleep(0.01)
    raise RuntimeError(f"job {job_id} unfinished after {timeout:.0f} s")


def tests_own_time(files: dict[str, str], tmp: Path) -> tuple[float, float]:
    """Median of the generated tests' own run time ("Ran ... in X s") and of the whole subprocess's wall time."""
    root = tmp / f"project-{uuid.uuid4().hex[:6]}"
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    own, wall = [], []
    for _ in range(TEST_RUNS):
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-B", "-m", "unittest", "discover", "-s", "tests", "-t", "."], cwd=root,
                             capture_output=True, text=True, timeout=120)
        wall.append(time.perf_counter() - start)
        if run.returncode != 0:
            raise RuntimeError(f"the generated tests failed:\n{run.stderr[-2000:]}")
        own.append(float(_RAN.search(run.stderr).group(1)))
    return statistics.median(own), statistics.median(wall)


def pipeline_in_process(path: Variant, peer: OpenAIPeer, settings_env: dict[str, str]) -> tuple[float, float, float]:
    """Median seconds of one pipeline run in this process, its validation, and the model's part (peer side)."""
    from shared.generator import get_provider, run_pipeline
    from shared.settings import Settings

    settings = Settings(_env_file=None, database_url="sqlite://", **{k.lower(): v for k, v in settings_env.items()})
    totals, validations, models = [], [], []
    for index in range(PIPELINE_RUNS + 1):
        before = len(peer.completions)
        start = time.perf_counter()
        result = run_pipeline(path.body.get("spec"), KIND, prompt=path.body.get("prompt"),
                              provider=get_provider(settings.generation_provider, settings))
        elapsed = time.perf_counter() - start
        if index == 0:
            continue  # the first run pays for imports
        totals.append(elapsed)
        validations.append(result.report.duration_seconds)
        models.append(model_seconds(peer.completions[before:]))
    return statistics.median(totals), statistics.median(validations), statistics.median(models)


def measure(path: Variant, service_env: dict[str, str], token: str, project_id: str, db: Database, peer: OpenAIPeer,
            args: argparse.Namespace, tmp: Path) -> Figures:
    """Start the service and its worker for `path`, and take its figures."""
    from shared.taskqueue import make_producer

    figures = Figures(path.name)
    env = {**service_env, **path.env}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    body = {"project_id": project_id, **path.body}
    settings = settings_for(service_env["DATABASE_URL"], service_env["REDIS_URL"], service_env["SECRET_KEY"])
    producer = make_producer(settings)

    def submit(http: requests.Session) -> str:
        response = http.post(f"{url}/api/v2/generate/{KIND}", json=body, headers=headers, timeout=30)
        if response.status_code != 202:
            raise RuntimeError(f"submission answered {response.status_code}: {response.text[:500]}")
        return response.json()["id"]

    with serve(gunicorn("web:create_app()", port), env, ROOT, f"{url}/healthz"), \
            running(celery_worker("worker", QUEUES), env, ROOT, lambda: bool(producer.control.ping(timeout=0.5))), \
            requests.Session() as http:
        for _ in range(2):  # warm both worker processes
            wait_finished(db, submit(http))
        rows, models = [], []
        for _ in range(args.idle_jobs):
            before = len(peer.completions)
            rows.append(wait_finished(db, submit(http)))
            models.append(model_seconds(peer.completions[before:]))
        archive = http.get(f"{url}/api/v2/projects/{project_id}/archive", headers=headers, timeout=30)

        start = datetime.now(UTC)
        ids = [submit(http) for _ in range(args.jobs)]
        burst = job_rows(db, ids, timeout=600)
        figures.jobs_per_second = args.jobs / span(max(row.finished_at for row in burst), start)

    with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
        files = {name.split("/", 1)[1]: bundle.read(name).decode() for name in bundle.namelist() if "/" in name}
    figures.tests_own, figures.tests_wall = tests_own_time(files, tmp)
    figures.queue = [span(row.started_at, row.created_at) for row in rows]
    figures.run = [span(row.finished_at, row.started_at) for row in rows]
    figures.model = models
    figures.own = [span(row.finished_at, row.created_at) - model - figures.tests_own
                   for row, model in zip(rows, models)]
    figures.pipeline, figures.validation, figures.pipeline_model = pipeline_in_process(path, peer, path.env)
    return figures


def report(all_figures: list[Figures], args: argparse.Namespace) -> None:
    ms = 1000
    print(f"{'path':10} {'jobs/s':>7} {'own p50':>8} {'own p99':>8} {'run p50':>8} {'model p50':>10} "
          f"{'tests p50':>10} {'queue p50':>10} {'queue p99':>10}   (ms unless stated)")
    for f in all_figures:
        print(f"{f.name:10} {f.jobs_per_second:7.2f} {statistics.median(f.own) * ms:8.0f} "
              f"{percentile(f.own, 99) * ms:8.0f} {statistics.median(f.run) * ms:8.0f} "
              f"{statistics.median(f.model) * ms:10.0f} {f.tests_own * ms:10.0f} "
              f"{statistics.median(f.queue) * ms:10.1f} {percentile(f.queue, 99) * ms:10.1f}")
    print(f"jobs/s: {args.jobs} agentic jobs submitted at once to 2 worker processes; own = created -> finished "
          f"minus the model's time minus the tests' own run time, {args.idle_jobs} jobs one at a time; "
          f"the peer streams {args.token_rate:g} tokens/s.")
    for f in all_figures:
        provider = f.pipeline - f.validation - f.pipeline_model
        around = statistics.median(f.run) - f.pipeline
        print(f"{f.name}: where a job's own time goes (medians, ms): queue wait {statistics.median(f.queue) * ms:.1f}; "
              f"validation {f.validation * ms:.0f}, of which the tests' own run {f.tests_own * ms:.0f} (a bare "
              f"`python -m unittest` of the project takes {f.tests_wall * ms:.0f} wall: interpreter start, imports, "
              f"the tests' server); the provider's client, parsing and rendering {provider * ms:.0f}; "
              f"the job around the pipeline (claim, row progress and cancel checks, tokens, storing the files, "
              f"commit) {around * ms:.0f}. A pipeline run in this process took {f.pipeline * ms:.0f} of which the "
              f"model {f.pipeline_model * ms:.0f}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-jobs", type=int, default=20, help="jobs run one at a time for the own-time figures")
    parser.add_argument("--jobs", type=int, default=20, help="jobs submitted at once for jobs/s")
    parser.add_argument("--token-rate", type=float, default=2000.0, help="tokens/s the model peer streams")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--paths", default="embedded,llm", help="which paths to measure")
    args = parser.parse_args()

    from shared.db import Database

    secret = secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory() as tmp, embedded_redis() as redis_url, \
            fresh_database(args.database_url, tmp) as database_url, OpenAIPeer(models=(MODEL,)) as peer:
        peer.script(*[ScriptedModel(args.token_rate)] * 100_000)
        settings = settings_for(database_url, f"{redis_url}/0", secret)
        token, project_id = seed(settings)
        service_env = {"REDIS_URL": f"{redis_url}/0", "DATABASE_URL": database_url, "DEVORA_ENV": "development",
                       "SECRET_KEY": secret, "RATELIMIT_DEFAULT": UNLIMITED, "RATELIMIT_GENERATE_AGENTIC": UNLIMITED,
                       "LOG_LEVEL": "WARNING", **PLAN_LIMITS, "PLAN_FREE_MONTHLY_TOKENS": "1000000000000",
                       "PROMETHEUS_MULTIPROC_DIR": f"{tmp}/metrics"}
        paths = {
            "embedded": Variant("embedded", {"GENERATION_PROVIDER": "embedded"}, {"spec": SPEC}),
            "llm": Variant("llm", {"GENERATION_PROVIDER": "llm", "LLM_BASE_URL": peer.base_url, "LLM_MODEL": MODEL},
                         {"prompt": PROMPT}),
        }
        db = Database(settings)
        try:
            figures = [measure(paths[name], service_env, token, project_id, db, peer, args, Path(tmp))
                       for name in args.paths.split(",")]
        finally:
            db.engine.dispose()
    report(figures, args)


if __name__ == "__main__":
    main()
