"""Submitting code generation jobs."""
from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from shared import billing, jobs, projects
from shared.errors import Unprocessable
from shared.schemas.jobs import SPEC_REQUIRED, GenerateBody, IdempotencyHeader
from web.auth import current_user
from web.dispatch import enqueue
from web.metrics import JOBS_SUBMITTED
from web.openapi import BEARER, responses
from web.responses import JOB_ACCEPTED, job_accepted
from web.state import db_session, state

bp = APIBlueprint("generation", __name__, url_prefix="/api/v2/generate", abp_tags=[Tag(name="generation")],
                  abp_security=BEARER)
TASK = "generation.run"


@bp.before_request
def _authenticate() -> None:
    current_user()


def submit_generation(kind: str, body: GenerateBody, header: IdempotencyHeader) -> Response:
    """Record the job, commit, then hand it to the broker (the outbox covers a failed send)."""
    user = current_user()
    settings = state().settings
    if body.spec is None and settings.generation_needs_spec:
        raise Unprocessable(SPEC_REQUIRED, field="body.spec")
    session = db_session()
    projects.get_project(session, user.id, body.project_id)
    fingerprint = jobs.request_fingerprint(kind, body.model_dump(mode="json"))
    if header.idempotency_key:
        replay = jobs.find_replay(session, user.id, header.idempotency_key, fingerprint)
        if replay is not None:
            session.commit()
            return job_accepted(replay, replayed=True)
    # A retried request is answered above without counting against the plan again.
    billing.enforce_quota(session, user.id, settings)
    job, created = jobs.submit(
        session, owner_id=user.id, kind=kind, task_name=TASK, project_id=body.project_id,
        payload={"spec": body.spec.model_dump(mode="json") if body.spec else None, "prompt": body.prompt},
        max_attempts=settings.job_max_attempts, idempotency_key=header.idempotency_key, fingerprint=fingerprint,
        key_ttl_seconds=settings.idempotency_key_ttl_seconds,
    )
    session.commit()
    if created:
        JOBS_SUBMITTED.labels(kind).inc()
        enqueue(job.id, TASK)
    return job_accepted(job, replayed=not created)


@bp.post("/agentic", responses=responses({202: JOB_ACCEPTED}, 401, 402, 404, 409),
         description="Runs the staged agentic pipeline: plan, generate, validate, repair.")
def generate_agentic(body: GenerateBody, header: IdempotencyHeader):
    """Generate a project's API through the staged pipeline."""
    return submit_generation("agentic", body, header)


@bp.post("/fullstack", responses=responses({202: JOB_ACCEPTED}, 401, 402, 404, 409),
         description="Generates the API and a static HTML/JS page that uses it.")
def generate_fullstack(body: GenerateBody, header: IdempotencyHeader):
    """Generate a project's API and a static frontend for it."""
    return submit_generation("fullstack", body, header)
