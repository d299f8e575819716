"""Request and response bodies for generation jobs and job polling."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.jobs.kinds import JobKind
from shared.jobs.states import JobStatus
from shared.schemas.common import WHITESPACE_CLASS, HeaderModel, PageMeta, PageQuery, StoredText
from shared.schemas.projects import EXAMPLE_PROJECT_ID
from shared.schemas.spec import EXAMPLE_SPEC, AppSpec

SPEC_REQUIRED = ("the embedded generator needs a structured `spec`; a free-text `prompt` alone needs a "
                 "language-model provider (GENERATION_PROVIDER=llm), which is not configured")

EXAMPLE_JOB = {
    "id": "9d1c7e4a-2b3f-4c5d-8e6f-7a8b9c0d1e2f", "kind": JobKind.FULLSTACK, "status": JobStatus.SUCCEEDED,
    "project_id": EXAMPLE_PROJECT_ID,
    "progress": {"percent": 100, "stage": JobStatus.SUCCEEDED, "detail": None, "tokens": 0}, "attempts": 1,
    "max_attempts": 4, "next_retry_at": None, "cancel_requested": False, "error": None,
    "result": {"summary": {"kind": "fullstack", "app_name": "bookshop", "provider": "embedded", "entity_count": 2,
                           "file_count": 13, "validation_passed": True, "validation_message": "22 tests passed",
                           "tests_run": 22, "repair_attempts": 0},
               "files": ["README.md", "bookshop/app.py", "static/index.html", "tests/test_api.py"],
               "added": ["bookshop/app.py", "static/index.html", "tests/test_api.py"], "replaced": ["README.md"],
               "removed": ["notes/app.py"]},
    "usage": None,
    "created_at": "2026-12-01T09:30:00Z", "updated_at": "2026-12-01T09:30:04Z",
    "started_at": "2026-12-01T09:30:01Z", "finished_at": "2026-12-01T09:30:04Z",
}


# _needs_something_to_build for the document: a spec, or a prompt with more than whitespace in it.
_SPEC_OR_PROMPT = {"anyOf": [
    {"required": ["spec"], "properties": {"spec": {"type": "object"}}},
    {"required": ["prompt"], "properties": {"prompt": {"type": "string", "pattern": f"[^{WHITESPACE_CLASS}]"}}},
]}


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_SPEC_OR_PROMPT, openapi_extra={"example": {
        "project_id": EXAMPLE_PROJECT_ID, "spec": EXAMPLE_SPEC}})

    project_id: uuid.UUID
    prompt: StoredText | None = Field(None, max_length=20000,
                                      description="Free-text request; alone, it needs the language-model provider")
    spec: AppSpec | None = Field(None, description="Structured application spec (required by the embedded "
                                                   "provider; with a prompt, constraints for the model's plan)")

    @model_validator(mode="after")
    def _needs_something_to_build(self) -> GenerateBody:
        # Whether a prompt alone will do depends on the configured provider: the view checks that.
        if self.spec is None and not (self.prompt and self.prompt.strip()):
            raise ValueError("a `spec` or a `prompt` is required")
        return self


class EmbeddedGenerateBody(GenerateBody):
    """What to generate into which project; this deployment's generator builds from a `spec`, so it is required."""

    # The document's GenerateBody where the generator needs a spec; the view applies the same rule
    # to GenerateBody (SPEC_REQUIRED), so requests are still validated as GenerateBody.
    model_config = ConfigDict(title="GenerateBody", json_schema_extra=None)

    spec: AppSpec = Field(description="Structured application spec (required by the embedded provider; with a "
                                      "prompt, constraints for the model's plan)")


class IdempotencyHeader(HeaderModel):
    idempotency_key: str | None = Field(None, alias="Idempotency-Key", min_length=1, max_length=255,
                                        pattern=r"^[\x21-\x7e]+$")


class JobProgress(BaseModel):
    percent: int
    stage: str
    detail: str | None = Field(None, description="What is happening inside the stage, e.g. the file being written")
    tokens: int = Field(0, description="Model tokens the job has used so far")


class JobError(BaseModel):
    type: str
    message: str
    details: dict[str, Any] | None = Field(
        None, description="What a permanent failure left to look at: the last validation report and repair "
                          "attempts, the plan's errors, the model server's reason, the token cap")


class StageUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class JobUsage(BaseModel):
    """Model tokens the job used, summed over its attempts (failed and canceled ones included)."""

    total_tokens: int
    stages: dict[str, StageUsage] = Field(description="By stage: plan, generate, repair")

    @classmethod
    def of(cls, job) -> JobUsage | None:
        if not job.token_usage and not job.tokens_used:
            return None
        return cls(total_tokens=job.tokens_used, stages=job.token_usage or {})


class JobOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": EXAMPLE_JOB})

    id: uuid.UUID
    kind: JobKind
    status: JobStatus
    project_id: uuid.UUID | None
    progress: JobProgress
    attempts: int
    max_attempts: int
    next_retry_at: datetime | None
    cancel_requested: bool
    error: JobError | None
    result: dict[str, Any] | None = Field(description="When succeeded: a generation's summary, the spec it "
                                                      "built, its files, and which paths it added, replaced "
                                                      "and removed")
    usage: JobUsage | None = Field(description="Model tokens used; null when the job called no model")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job) -> JobOut:
        return cls(
            id=job.id, kind=job.kind, status=job.status, project_id=job.project_id,
            progress=JobProgress(percent=job.progress_percent, stage=job.progress_stage, detail=job.progress_detail,
                                 tokens=job.progress_tokens or 0),
            attempts=job.attempts, max_attempts=job.max_attempts, next_retry_at=job.next_retry_at,
            cancel_requested=job.cancel_requested_at is not None,
            error=JobError(type=job.error_type, message=job.error_message or "", details=job.error_details)
            if job.error_type else None,
            result=job.result, usage=JobUsage.of(job), created_at=job.created_at, updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobPage(PageMeta):
    model_config = ConfigDict(json_schema_extra={"example":
        {"items": [EXAMPLE_JOB], "page": 1, "per_page": 20, "total": 1}})

    items: list[JobOut]


class JobListQuery(PageQuery):
    status: JobStatus | None = None
    kind: JobKind | None = None
    project_id: uuid.UUID | None = None


class JobPath(BaseModel):
    job_id: uuid.UUID


class IfNoneMatchHeader(HeaderModel):
    if_none_match: str | None = Field(None, alias="If-None-Match", max_length=200)
