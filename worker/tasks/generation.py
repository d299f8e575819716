"""generation.run: turn a job's prompt or spec into project files, charging the model tokens it used."""
from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import projects
from shared.errors import NotFound
from shared.generator import (
    GenerationCanceled,
    GenerationError,
    GenerationFailed,
    PlanInvalid,
    ProgressUpdate,
    ProviderRejected,
    ProviderUnavailable,
    TokenBudgetExceeded,
    get_provider,
    run_pipeline,
)
from shared.jobs.kinds import TaskName
from shared.sandbox import Sandbox
from shared.models import Job
from shared.settings import Settings
from worker.jobrunner import JobCanceled, JobContext, JobFailed, JobOutcome, run_job

logger = logging.getLogger(__name__)
# A provider outage or a database blip is worth another attempt; everything else is final.
TRANSIENT = (ProviderUnavailable, OperationalError)
# What a failed job keeps of its last failure: enough to read, small enough for every poll.
FAILURE_OUTPUT_CHARS = 4000
FAILURE_LIST_ITEMS = 20
FAILURE_TEXT_CHARS = 1000


@shared_task(name=TaskName.GENERATION_RUN, bind=True)
def run(self, job_id: str) -> None:
    """Run one generation job (agentic or fullstack)."""
    run_job(self, job_id, generate, TRANSIENT)


class ProgressWriter:
    """Hands a run's progress updates to its job; `record` is the one place each update goes through.

    Updates come at a bounded rate (each stage change, and while the model writes at most every
    LLM_PROGRESS_INTERVAL_SECONDS), and the job's reporter writes the latest to the row at most
    every 0.1 s without holding the run up.
    """

    def __init__(self, ctx: JobContext, tokens_before: int) -> None:
        self._ctx = ctx
        self._tokens_before = tokens_before

    def record(self, update: ProgressUpdate) -> None:
        self._ctx.progress(update.percent, update.stage, detail=update.detail,
                           tokens=self._tokens_before + update.tokens)


class StageClock:
    """Seconds spent in each pipeline stage (repair and validate rounds added up), from the stage changes seen."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stage: str | None = None
        self._since = time.perf_counter()

    def mark(self, stage: str) -> None:
        if stage == self._stage:
            return
        now = time.perf_counter()
        if self._stage is not None:
            self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + now - self._since
        self._stage, self._since = stage, now

    def to_dict(self) -> dict[str, float]:
        return {stage: round(seconds, 4) for stage, seconds in self.seconds.items()}


def generate(ctx: JobContext) -> JobOutcome:
    """Plan, generate, validate and repair; the files are written only if the job succeeds."""
    settings = _with_tokens_left(ctx)
    writer, clock = ProgressWriter(ctx, ctx.tokens_used), StageClock()

    def on_update(update: ProgressUpdate) -> None:
        clock.mark(update.stage)
        writer.record(update)

    try:
        result = run_pipeline(
            ctx.payload.get("spec"), ctx.kind, prompt=ctx.payload.get("prompt"),
            provider=get_provider(settings.generation_provider, settings),
            on_update=on_update, should_cancel=ctx.cancel_requested, on_file=ctx.announcer.file,
            validate_timeout=settings.job_validate_timeout_seconds, max_repairs=settings.job_max_repairs,
            sandbox=Sandbox.from_settings(settings),
        )
    except GenerationError as error:
        tokens_before = ctx.tokens_used
        ctx.charge(error.usage)
        if isinstance(error, GenerationCanceled):
            raise JobCanceled(str(error)) from error
        if isinstance(error, ProviderUnavailable):
            raise
        raise _failure(error, tokens_before, ctx.settings) from None
    ctx.charge(result.summary.usage)
    files = result.files
    limits = projects.Limits.from_settings(ctx.settings)
    # The seconds per stage tell an operator where a slow job's time went.
    outcome = {"summary": result.summary.to_dict(), "spec": result.spec.model_dump(mode="json"),
               "files": sorted(files), "stage_seconds": clock.to_dict()}

    def write(session: Session, job: Job) -> None:
        if job.project_id is None:
            raise NotFound("the project was deleted while the job ran")
        project = projects.get_project(session, job.owner_id, job.project_id, for_update=True)
        # The changes are known only inside the transaction; they join the stored result.
        outcome.update(projects.replace_generated_files(session, project, files, limits).to_dict())

    logger.info("job %s: %s files generated, %s tokens", ctx.job_id, len(files), result.summary.total_tokens)
    return JobOutcome(result=outcome, apply=write)


def _with_tokens_left(ctx: JobContext) -> Settings:
    """The settings this attempt runs with: LLM_MAX_JOB_TOKENS caps the whole job, so a retry gets what is left."""
    cap = ctx.settings.llm_max_job_tokens
    if not ctx.tokens_used:
        return ctx.settings
    if ctx.tokens_used >= cap:
        raise _failure(TokenBudgetExceeded(0, cap), ctx.tokens_used, ctx.settings)
    return ctx.settings.model_copy(update={"llm_max_job_tokens": cap - ctx.tokens_used})


def _failure(error: GenerationError, tokens_before: int, settings: Settings) -> JobFailed:
    """The permanent failure to record for a pipeline error: its cause in words, and what is left to look at."""
    message, details = str(error), None
    if isinstance(error, TokenBudgetExceeded):
        used, cap = tokens_before + error.used, settings.llm_max_job_tokens
        message, details = str(TokenBudgetExceeded(used, cap)), {"used": used, "cap": cap}
    elif isinstance(error, ProviderRejected):
        details = {"reason": error.reason}
    elif isinstance(error, PlanInvalid):
        details = {"errors": [_text(item) for item in error.errors[:FAILURE_LIST_ITEMS]]}
    elif isinstance(error, GenerationFailed):
        details = {"repair_attempts": error.repair_attempts, "report": _bounded_report(error.report.to_dict())}
    return JobFailed(message, error_type=type(error).__name__, details=details)


def _bounded_report(report: dict[str, Any]) -> dict[str, Any]:
    bounded: dict[str, Any] = {}
    for name, value in report.items():
        if name == "output_tail" and isinstance(value, str):
            bounded[name] = value[-FAILURE_OUTPUT_CHARS:]
        elif isinstance(value, str):
            bounded[name] = _text(value)
        elif isinstance(value, list | tuple):
            bounded[name] = list(value[:FAILURE_LIST_ITEMS])
        else:
            bounded[name] = value
    return bounded


def _text(value: str) -> str:
    return value if len(value) <= FAILURE_TEXT_CHARS else value[: FAILURE_TEXT_CHARS - 1] + "…"
