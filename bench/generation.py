"""Generation benchmark: jobs/s end to end, and the pipeline's own time per job, embedded and through a model.

    python bench/generation.py [--idle-jobs 20] [--jobs 20] [--token-rate 2000] [--database-url URL]

For each path (the embedded templates; the model provider against the local OpenAI-compatible peer
streaming at --token-rate tokens/s), with the service's gunicorn and a prefork worker (-c 2) up:
  a. jobs/s end to end: --jobs agentic jobs submitted at once, first submission to last finish;
  b. at idle, one job at a time (--idle-jobs): the job's own time, created -> finished minus the
     model's time (what the peer spent answering that job's requests) and minus the generated tests'
     own run time ("Ran N tests in X s", measured on the same project below): p50 and p99;
  c. where that time goes, per job: queue wait (created -> started); validation beyond the tests' own
     run (process start, imports, discovery, writing files), from the seconds per stage the worker
     records in the job's result; the provider beyond the model (client, parsing, rendering); and the
     job around the pipeline (claim, charging tokens, storing the files, commit).
Each idle job is paired with one standalone run of the project's tests, for the tests' own time.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, celery_worker, embedded_redis, fresh_database, gunicorn  # noqa: E402
from bench.jobs import (  # noqa: E402
    PLAN_LIMITS, QUEUES, SPEC, UNLIMITED, job_rows, percentile, seed, settings_for, span,
)
from tests.llm_helpers import files_answer, implementation  # noqa: E402
from tests.peers.processes import free_port, running, serve  # noqa: E402
from tests.peers.openai_peer import OpenAIPeer, RecordedRequest, Reply  # noqa: E402

if TYPE_CHECKING:
    from shared.db import Database

PROMPT = "a notes API: notes with a title"
MODEL = "bench-model"
KIND = "agentic"
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
    """One path's figures; the lists hold one value per idle job, in seconds."""

    name: str
    jobs_per_second: float = 0.0
    own: list[float] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)
    model: list[float] = field(default_factory=list)
    tests_own: list[float] = field(default_factory=list)
    tests_wall: list[float] = field(default_factory=list)
    validation_start: list[float] = field(default_factory=list)
    provider: list[float] = field(default_factory=list)
    around: list[float] = field(default_factory=list)


def model_seconds(requests_: list[RecordedRequest]) -> float:
    """What the peer spent on these requests, from reading each to being done with it."""
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


def stage_seconds(db: Database, job_id: str) -> dict[str, float]:
    """The seconds per pipeline stage the worker recorded in the job's result."""
    from shared.models import Job

    with db.sessions() as session:
        return dict(session.get(Job, uuid.UUID(job_id)).result["stage_seconds"])


def write_project(files: dict[str, str], root: Path) -> Path:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return root


def run_tests(root: Path) -> tuple[float, float]:
    """The generated tests' own run time ("Ran ... in X s") and the wall time of their whole subprocess."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-B", "-m", "unittest", "discover", "-s", "tests", "-t", "."], cwd=root,
                         capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"the generated tests failed:\n{run.stderr[-2000:]}")
    return float(_RAN.search(run.stderr).group(1)), wall


def measure(variant: Variant, service_env: dict[str, str], token: str, project_id: str, db: Database,
            peer: OpenAIPeer, args: argparse.Namespace, tmp: Path) -> Figures:
    """Start the service and its worker for `variant`, and take its figures.

    Each idle job is followed by one standalone run of the project's tests, so the two samples
    of a pair see the same load on the machine.
    """
    from shared.taskqueue import make_producer

    figures = Figures(variant.name)
    env = {**service_env, **variant.env}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    body = {"project_id": project_id, **variant.body}
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
        archive = http.get(f"{url}/api/v2/projects/{project_id}/archive", headers=headers, timeout=30)
        with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
            files = {name.split("/", 1)[1]: bundle.read(name).decode() for name in bundle.namelist() if "/" in name}
        root = write_project(files, tmp / f"project-{variant.name}")

        for _ in range(args.idle_jobs):
            before = len(peer.completions)
            job_id = submit(http)
            row = wait_finished(db, job_id)
            model = model_seconds(peer.completions[before:])
            stages = stage_seconds(db, job_id)
            tests_own, tests_wall = run_tests(root)
            total, run = span(row.finished_at, row.created_at), span(row.finished_at, row.started_at)
            figures.own.append(total - model - tests_own)
            figures.queue.append(span(row.started_at, row.created_at))
            figures.model.append(model)
            figures.tests_own.append(tests_own)
            figures.tests_wall.append(tests_wall)
            figures.validation_start.append(stages["validate"] - tests_own)
            figures.provider.append(stages["plan"] + stages["generate"] - model)
            figures.around.append(run - sum(stages.values()))

        start = datetime.now(UTC)
        ids = [submit(http) for _ in range(args.jobs)]
        burst = job_rows(db, ids, timeout=600)
        figures.jobs_per_second = args.jobs / span(max(row.finished_at for row in burst), start)
    return figures


def interpreter_start(*flags: str) -> float:
    """Median wall time of starting and ending a bare interpreter."""
    times = []
    for _ in range(10):
        start = time.perf_counter()
        subprocess.run([sys.executable, *flags, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(all_figures: list[Figures], args: argparse.Namespace) -> None:
    ms = 1000

    def p50(values: list[float]) -> float:
        return statistics.median(values) * ms

    print(f"{'path':10} {'jobs/s':>7} {'own p50':>8} {'own p99':>8} {'model p50':>10} {'tests p50':>10} "
          f"{'queue p50':>10} {'queue p99':>10}   (ms)")
    for f in all_figures:
        print(f"{f.name:10} {f.jobs_per_second:7.2f} {p50(f.own):8.0f} {percentile(f.own, 99) * ms:8.0f} "
              f"{p50(f.model):10.0f} {p50(f.tests_own):10.0f} {p50(f.queue):10.1f} {percentile(f.queue, 99) * ms:10.1f}")
    print(f"jobs/s: {args.jobs} {KIND} jobs submitted at once to 2 worker processes. own = created -> finished minus "
          f"the model's time (peer side) minus the generated tests' own run time, over {args.idle_jobs} jobs run one "
          f"at a time. The peer streams {args.token_rate:g} tokens/s.")
    print(f"a bare interpreter start here: `python -c pass` {interpreter_start() * ms:.0f} ms, "
          f"`python -I -S -c pass` {interpreter_start('-I', '-S') * ms:.0f} ms")
    for f in all_figures:
        parts = [("queue wait: commit, broker, worker pickup (created -> started)", f.queue),
                 ("validation beyond the tests' own run: process start, imports, discovery, files",
                  f.validation_start),
                 ("the provider beyond the model: client, parsing, rendering", f.provider),
                 ("the job around the pipeline: claim, charging tokens, storing the files, commit", f.around)]
        print(f"{f.name}: where the own time goes (p50 of each part, ms):")
        for label, values in parts:
            print(f"  {label:84} {p50(values):6.1f}")
        print(f"  (the project's tests run alone: {p50(f.tests_own):.0f} ms of tests in {p50(f.tests_wall):.0f} ms "
              f"of subprocess wall time)")


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
