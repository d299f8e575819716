"""Polling and canceling jobs."""
from __future__ import annotations

import hashlib

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag

from shared.errors import NotFound
from shared.jobs import lifecycle
from shared.jobs.states import FINISHED, JobStatus
from shared.schemas.jobs import IfNoneMatchHeader, JobListQuery, JobOut, JobPage, JobPath
from web.auth import current_user_id
from web.dispatch import announcer
from web.openapi import BEARER, responses
from web.state import db_session, state

bp = APIBlueprint("jobs", __name__, url_prefix="/api/v2/jobs", abp_tags=[Tag(name="jobs")], abp_security=BEARER)
_NOT_MODIFIED = {"description": "Not modified since the ETag given in If-None-Match",
                 "headers": {"ETag": {"schema": {"type": "string"}}}}


@bp.get("", responses=responses({200: JobPage}, 401))
def list_jobs(query: JobListQuery):
    """The caller's jobs, newest first, filtered by status, kind or project."""
    rows, total = lifecycle.list_owned(db_session(), current_user_id(), status=query.status, kind=query.kind,
                                  project_id=query.project_id, page=query.page, per_page=query.per_page)
    return JobPage(items=[JobOut.of(job) for job in rows], page=query.page, per_page=query.per_page,
                   total=total).model_dump(mode="json")


@bp.get("/<uuid:job_id>", responses=responses({200: JobOut, 304: _NOT_MODIFIED}, 401, 404))
def get_job(path: JobPath, header: IfNoneMatchHeader):
    """One job; send its ETag back in If-None-Match to get a bodiless 304 while nothing changed."""
    job = state().reads.job(path.job_id, current_user_id())
    if job is None:
        raise NotFound("job not found")
    # Every change to a job moves its updated_at (lease renewals included), so the version
    # is known without rendering the body; a 304 skips that work.
    etag = hashlib.blake2b(f"{job.id}:{job.updated_at.isoformat()}".encode(), digest_size=12).hexdigest()
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = Response(JobOut.of(job).model_dump_json(), mimetype="application/json")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    if job.status not in FINISHED:
        response.headers["Retry-After"] = str(lifecycle.poll_delay_seconds(job, state().settings.job_poll_interval_seconds))
    return response


@bp.post("/<uuid:job_id>/cancel", responses=responses({200: JobOut, 202: JobOut}, 401, 404, 409))
def cancel_job(path: JobPath):
    """Cancel a job: at once when it waits, at its next step when it runs; 409 when it has finished."""
    session = db_session()
    job = lifecycle.request_cancel(session, lifecycle.get_owned(session, current_user_id(), path.job_id))
    session.commit()
    if job.status == JobStatus.CANCELED:
        announcer(job).finished(JobStatus.CANCELED)
        return JobOut.of(job).model_dump(mode="json"), 200
    # A running job stops at its next step; its worker announces the end.
    return JobOut.of(job).model_dump(mode="json"), 202
