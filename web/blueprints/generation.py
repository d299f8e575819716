"""Submitting code generation jobs."""
from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from shared import billing
from shared.errors import Unprocessable
from shared.jobs import submission
from shared.jobs.kinds import JobKind
from shared.schemas.jobs import SPEC_REQUIRED, GenerateBody, IdempotencyHeader
from web.auth import authenticated_account
from web.dispatch import enqueue_submitted
from web.metrics import JOBS_SUBMITTED
from web.openapi import BEARER, responses
from web.responses import JOB_ACCEPTED, job_accepted
from web.state import db_session, state

bp = APIBlueprint("generation", __name__, url_prefix="/api/v2/generate", abp_tags=[Tag(name="generation")],
                  abp_security=BEARER)


def submit_generation(kind: JobKind, body: GenerateBody, header: IdempotencyHeader) -> Response:
    """Record the job, commit, then hand it to the broker (the outbox covers a failed send)."""
    if body.spec is None and state().settings.generation_needs_spec:
        raise Unprocessable(SPEC_REQUIRED, field="body.spec")
    session, settings, account = db_session(), state().settings, authenticated_account()
    job, created = submission.submit_generation(
        session, settings, owner_id=account.user_id, kind=kind, project_id=body.project_id,
        payload={"spec": body.spec.model_dump(mode="json") if body.spec else None, "prompt": body.prompt},
        idempotency_key=header.idempotency_key, plan=billing.plans(settings)[account.plan])
    session.commit()
    if created:
        JOBS_SUBMITTED.labels(kind).inc()
        enqueue_submitted(job)
    return job_accepted(job, replayed=not created)


@bp.post("/agentic", responses=responses({202: JOB_ACCEPTED}, 401, 402, 404, 409),
         description="Runs the staged agentic pipeline: plan, generate, validate, repair.")
def generate_agentic(body: GenerateBody, header: IdempotencyHeader):
    """Generate a project's API through the staged pipeline."""
    return submit_generation(JobKind.AGENTIC, body, header)


@bp.post("/fullstack", responses=responses({202: JOB_ACCEPTED}, 401, 402, 404, 409),
         description="Generates the API and a static HTML/JS page that uses it.")
def generate_fullstack(body: GenerateBody, header: IdempotencyHeader):
    """Generate a project's API and a static frontend for it."""
    return submit_generation(JobKind.FULLSTACK, body, header)
