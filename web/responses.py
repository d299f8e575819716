"""Responses shared by the routes that start jobs."""
from __future__ import annotations

from flask import Response, json, url_for

from shared.jobs.lifecycle import poll_delay_seconds
from shared.models import Job
from shared.schemas.jobs import JobOut
from web.state import state

# OpenAPI for a 202 carrying a job (the JobOut schema is registered by the jobs routes).
JOB_ACCEPTED = {"description": "Accepted: the job is queued; poll its Location",
                "headers": {"Location": {"schema": {"type": "string"}},
                            "Retry-After": {"schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobOut"}}}}


def job_accepted(job: Job, replayed: bool) -> Response:
    response = Response(json.dumps(JobOut.of(job).model_dump(mode="json")), status=202, mimetype="application/json")
    response.headers["Location"] = url_for("jobs.get_job", job_id=job.id)
    response.headers["Retry-After"] = str(poll_delay_seconds(job, state().settings.job_poll_interval_seconds))
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
