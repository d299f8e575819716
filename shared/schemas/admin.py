"""Request and response bodies for the admin API."""
from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.jobs.kinds import JobKind
from shared.jobs.states import RETRYABLE, JobStatus, WebhookStatus
from shared.schemas.common import WHITESPACE_CLASS, DateTime, PageMeta, PageQuery, StoredText
from shared.schemas.jobs import EXAMPLE_JOB, JobOut

MAX_CUSTOMER_IDS = 100
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")
# CustomerQuery._customer_ids for the document: comma-separated parts, each an id or nothing, with
# whitespace around them; 1 to MAX_CUSTOMER_IDS ids.
_EMPTY_PART = f"[{WHITESPACE_CLASS}]*"
_ID_PART = f"{_EMPTY_PART}[A-Za-z0-9_]{{1,255}}{_EMPTY_PART}"
CUSTOMER_IDS_PATTERN = (f"^(?:{_EMPTY_PART},)*{_ID_PART}(?:,(?:{_EMPTY_PART},)*{_ID_PART}){{0,{MAX_CUSTOMER_IDS - 1}}}"
                        f"(?:,{_EMPTY_PART})*$")


class StatsOut(BaseModel):
    users: int
    jobs_by_status: dict[str, int]
    oldest_queued_job_age_seconds: float | None = Field(description="Age of the oldest queued job; null if none")
    webhook_backlog: int = Field(description="Stored events not yet processed, ignored or failed")
    webhooks_failed: int
    queue_depths: dict[str, int | None] = Field(description="Messages ready per broker queue; null if unreadable")
    workers: int | None = Field(description="Workers that answered a ping; null if the broker is unreachable")
    beat_heartbeat_age_seconds: float | None = Field(description="Seconds since beat last ticked; null if unknown")


class UserSearchQuery(PageQuery):
    q: StoredText | None = Field(None, min_length=1, max_length=320, description="Part of an email or a name")


class AdminUserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: str
    is_active: bool
    created_at: datetime


class AdminUserPage(PageMeta):
    items: list[AdminUserOut]


class AdminJobQuery(PageQuery):
    status: JobStatus | None = None
    kind: JobKind | None = None
    owner_id: uuid.UUID | None = None
    owner_email: StoredText | None = Field(None, min_length=1, max_length=320)
    created_after: DateTime | None = Field(None, description="Inclusive lower bound on creation time")
    created_before: DateTime | None = Field(None, description="Exclusive upper bound on creation time")


class AdminJobOut(JobOut):
    model_config = ConfigDict(json_schema_extra={"example": {
        **EXAMPLE_JOB, "owner_id": "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", "owner_email": "ada@example.com",
        "task_name": "generation.run", "sent_at": "2026-12-01T09:30:00Z"}})

    owner_id: uuid.UUID
    owner_email: str
    task_name: str
    sent_at: datetime | None


class AdminJobPage(PageMeta):
    items: list[AdminJobOut]


class AdminJobPath(BaseModel):
    job_id: uuid.UUID


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid", openapi_extra={"example": {
        "status": JobStatus.FAILED, "kind": JobKind.FULLSTACK, "created_after": "2026-12-01T00:00:00Z",
        "dry_run": True}})

    status: Literal[tuple(sorted(RETRYABLE))]  # the states an operator may queue again
    kind: JobKind | None = None
    created_after: DateTime | None = None
    created_before: DateTime | None = None
    dry_run: bool = Field(description="Only count the jobs that would be requeued")


class ReplayOut(BaseModel):
    count: int
    dry_run: bool
    job_ids: list[uuid.UUID] | None = Field(None, description="The requeued jobs; absent from a dry run")


class WebhookListQuery(PageQuery):
    status: WebhookStatus | None = None
    type: StoredText | None = Field(None, min_length=1, max_length=100, description="e.g. invoice.paid")


class WebhookEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    stripe_event_id: str
    type: str
    status: WebhookStatus
    attempts: int
    error_type: str | None
    error_message: str | None
    received_at: datetime
    sent_at: datetime | None
    processed_at: datetime | None


class WebhookPage(PageMeta):
    items: list[WebhookEventOut]


class WebhookEventPath(BaseModel):
    event_id: uuid.UUID


class CacheFlushOut(BaseModel):
    removed: int = Field(description="Cache keys deleted")


class CustomerQuery(PageQuery):
    ids: str | None = Field(None, min_length=1, max_length=MAX_CUSTOMER_IDS * 256,
                            json_schema_extra={"pattern": CUSTOMER_IDS_PATTERN},
                            description=f"Comma-separated Stripe customer ids (at most {MAX_CUSTOMER_IDS}); "
                                        "without it, the stored customers page by page")

    @field_validator("ids")
    @classmethod
    def _customer_ids(cls, value: str | None) -> str | None:
        if value is None:
            return None
        ids = [part.strip() for part in value.split(",") if part.strip()]
        if not ids:
            raise ValueError("name at least one customer id")
        if len(ids) > MAX_CUSTOMER_IDS:
            raise ValueError(f"at most {MAX_CUSTOMER_IDS} customer ids at a time")
        bad = next((i for i in ids if not _CUSTOMER_ID.match(i)), None)
        if bad is not None:
            raise ValueError(f"{bad[:40]!r} is not a Stripe customer id")
        return ",".join(dict.fromkeys(ids))

    @property
    def id_list(self) -> list[str]:
        return self.ids.split(",") if self.ids else []


class CustomerFound(BaseModel):
    id: str
    email: str | None
    name: str | None
    deleted: bool


class CustomerError(BaseModel):
    id: str
    error: str


class CustomerPage(PageMeta):
    items: list[CustomerFound | CustomerError]
