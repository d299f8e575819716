"""The states a job or a stored webhook event can be in, and the named sets every layer uses."""
from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


# Nothing more will happen to a finished job unless an operator retries it.
FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
# In flight: counted against a plan's concurrent jobs.
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING})
# Waiting for a worker: a cancel stops these at once, and a delivery may claim them.
WAITING = frozenset({JobStatus.QUEUED, JobStatus.RETRYING})
# What an operator may queue again.
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELED})


class WebhookStatus(StrEnum):
    """received -> processing -> processed | ignored | retrying | failed."""

    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    IGNORED = "ignored"
    RETRYING = "retrying"
    FAILED = "failed"


# Events that wait for a worker; a delivery may claim them.
WEBHOOK_PENDING = frozenset({WebhookStatus.RECEIVED, WebhookStatus.RETRYING})
# Events that wait for nothing (failed ones wait for an operator, and are counted apart).
WEBHOOK_SETTLED = frozenset({WebhookStatus.PROCESSED, WebhookStatus.IGNORED, WebhookStatus.FAILED})
