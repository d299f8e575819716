"""Submitting code generation jobs."""
from __future__ import annotations

from flask import Response, json
from flask_openapi3 import APIBlueprint, Tag

from shared import jobs, projects
from shared.models import Job
from shared.schemas.jobs import GenerateBody, IdempotencyHeader, JobOut
from web.auth import current_user
from web.dispatch import enqueue
from web.openapi import BEARER, responses
from web.ratelimits import set_retry_after
from web.state import db_session, state

bp = APIBlueprint("generation", __name__, url_prefix="/api/v2/generate", abp_tags=[Tag(name="generation")],
                  abp_security=BEARER)
TASK = "generation.run"
_ACCEPTED = {"description": "Accepted: the job is queued; poll its Location",
             "headers": {"Location": {"schema": {"type": "string"}},
                         "Retry-After": {"schema": {"type": "integer"}}},
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobOut"}}}}


@bp.before_request
def _authenticate() -> None:
    current_user()


def accepted(job: Job, replayed: bool) -> Response:
    response = Response(json.dumps(JobOut.of(job).model_dump(mode="json")), status=202, mimetype="application/json")
    response.headers["Location"] = f"/api/v2/jobs/{job.id}"
    set_retry_after(response, jobs.poll_delay_seconds(job, state().settings.job_poll_interval_seconds))
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def submit_generation(kind: str, body: GenerateBody, header: IdempotencyHeader) -> Response:
    """Record the job, commit, then hand it to the broker (the outbox covers a failed send)."""
    user = current_user()
    session = db_session()
    projects.get_project(session, user.id, body.project_id)
    settings = state().settings
    job, created = jobs.submit(
        session, owner_id=user.id, kind=kind, task_name=TASK, project_id=body.project_id,
        payload={"spec": body.spec.model_dump(mode="json"), "prompt": body.prompt},
        max_attempts=settings.job_max_attempts, idempotency_key=header.idempotency_key,
        fingerprint=jobs.request_fingerprint(kind, body.model_dump(mode="json")),
        key_ttl_seconds=settings.idempotency_key_ttl_seconds,
    )
    session.commit()
    if created:
        enqueue(job.id, TASK)
    return accepted(job, replayed=not created)


@bp.post("/agentic", responses=responses({202: _ACCEPTED}, 401, 404, 409),
         description="Runs the staged agentic pipeline: plan, generate, validate, repair.")
def generate_agentic(body: GenerateBody, header: IdempotencyHeader):
    """Generate a project's API through the staged pipeline."""
    return submit_generation("agentic", body, header)


@bp.post("/fullstack", responses=responses({202: _ACCEPTED}, 401, 404, 409),
         description="Generates the API and a static HTML/JS page that uses it.")
def generate_fullstack(body: GenerateBody, header: IdempotencyHeader):
    """Generate a project's API and a static frontend for it."""
    return submit_generation("fullstack", body, header)
