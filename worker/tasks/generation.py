"""generation.run: turn a job's spec into project files."""
from __future__ import annotations

import logging

from celery import shared_task
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared import projects
from shared.errors import NotFound
from shared.generator import GenerationCanceled, ProviderUnavailable, get_provider, run_pipeline
from shared.jobs.kinds import TaskName
from shared.models import Job
from worker.jobrunner import JobCanceled, JobContext, JobOutcome, run_job

logger = logging.getLogger(__name__)
# A provider outage or a database blip is worth another attempt; everything else is final.
TRANSIENT = (ProviderUnavailable, OperationalError)


@shared_task(name=TaskName.GENERATION_RUN, bind=True)
def run(self, job_id: str) -> None:
    """Run one generation job (agentic or fullstack)."""
    run_job(self, job_id, generate, TRANSIENT)


def generate(ctx: JobContext) -> JobOutcome:
    """Plan, generate, validate and repair; the files are written only if the job succeeds."""
    try:
        result = run_pipeline(
            ctx.payload["spec"], ctx.kind, provider=get_provider(ctx.settings.generation_provider),
            on_progress=ctx.progress, should_cancel=ctx.cancel_requested,
            validate_timeout=ctx.settings.job_validate_timeout_seconds, max_repairs=ctx.settings.job_max_repairs,
        )
    except GenerationCanceled as canceled:
        raise JobCanceled(str(canceled)) from canceled
    files = result.files
    limits = projects.Limits.from_settings(ctx.settings)
    outcome = {"summary": result.summary.to_dict(), "files": sorted(files)}

    def write(session: Session, job: Job) -> None:
        if job.project_id is None:
            raise NotFound("the project was deleted while the job ran")
        project = projects.get_project(session, job.owner_id, job.project_id, for_update=True)
        # The changes are known only inside the transaction; they join the stored result.
        outcome.update(projects.replace_generated_files(session, project, files, limits).to_dict())

    logger.info("job %s: %s files generated", ctx.job_id, len(files))
    return JobOutcome(result=outcome, apply=write)
