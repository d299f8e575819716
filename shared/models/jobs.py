"""Background jobs (generation, billing sync) and the idempotency keys that created them."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.jobs.kinds import TaskName, task_for
from shared.jobs.states import JobStatus
from shared.models.base import Base, Timestamps, new_id


class Job(Timestamps, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        # The concurrent-job quota counts a user's jobs in flight at every submission.
        Index("ix_jobs_owner_status", "owner_id", "status"),
        # The outbox scan: queued jobs never handed to the broker.
        Index("ix_jobs_status_sent", "status", "sent_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress_percent: Mapped[int] = mapped_column(default=0)
    progress_stage: Mapped[str] = mapped_column(String(64), default=JobStatus.QUEUED)
    # What is happening inside the stage ("writing bookshop/app.py"), and the tokens spent so far.
    progress_detail: Mapped[str | None] = mapped_column(String(200))
    progress_tokens: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    next_retry_at: Mapped[datetime | None]
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(String(2000))
    # What a permanent failure left to look at (the last failing test output, the plan's errors), bounded.
    error_details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Model tokens the job used over all its attempts, by stage, and in all: the sum is what the
    # plan's monthly token budget counts, so it is a column of its own.
    token_usage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tokens_used: Mapped[int] = mapped_column(default=0)
    # Outbox marker: set once the broker accepted the task message.
    sent_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    # Who runs it now and until when; a live run renews the lease.
    claim_token: Mapped[str | None] = mapped_column(String(36))
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    @property
    def task_name(self) -> TaskName:
        return task_for(self.kind)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner_id", "key", name="uq_idempotency_keys_owner_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
