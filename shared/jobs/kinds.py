"""Every task the worker runs, the queue it goes to, and the job kinds with the task that runs each.

This is the contract between the web side (and the CLI, and beat) and the worker: both import
the names from here, and a test checks that each name is registered on the worker and that each
queue is consumed by a worker command.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Queue(StrEnum):
    GENERATION = "generation"
    BILLING = "billing"
    WEBHOOKS = "webhooks"
    DEFAULT = "default"


class TaskName(StrEnum):
    GENERATION_RUN = "generation.run"
    BILLING_SYNC_CUSTOMER = "billing.sync_customer"
    BILLING_RECONCILE = "billing.reconcile"
    WEBHOOKS_PROCESS_STRIPE_EVENT = "webhooks.process_stripe_event"
    WEBHOOKS_ENQUEUE_UNPROCESSED = "webhooks.enqueue_unprocessed"
    WEBHOOKS_SWEEP_MISSED = "webhooks.sweep_missed"
    MAINTENANCE_REQUEUE_UNSENT_JOBS = "maintenance.requeue_unsent_jobs"
    MAINTENANCE_REAP_STUCK_JOBS = "maintenance.reap_stuck_jobs"
    MAINTENANCE_PURGE_IDEMPOTENCY_KEYS = "maintenance.purge_idempotency_keys"
    MAINTENANCE_PURGE_EXPIRED_OAUTH_STATES = "maintenance.purge_expired_oauth_states"


# Slow generation never delays a webhook, and housekeeping never waits behind either.
TASK_QUEUES: dict[TaskName, Queue] = {
    TaskName.GENERATION_RUN: Queue.GENERATION,
    TaskName.BILLING_SYNC_CUSTOMER: Queue.BILLING,
    TaskName.BILLING_RECONCILE: Queue.BILLING,
    TaskName.WEBHOOKS_PROCESS_STRIPE_EVENT: Queue.WEBHOOKS,
    TaskName.WEBHOOKS_ENQUEUE_UNPROCESSED: Queue.WEBHOOKS,
    TaskName.WEBHOOKS_SWEEP_MISSED: Queue.WEBHOOKS,
    TaskName.MAINTENANCE_REQUEUE_UNSENT_JOBS: Queue.DEFAULT,
    TaskName.MAINTENANCE_REAP_STUCK_JOBS: Queue.DEFAULT,
    TaskName.MAINTENANCE_PURGE_IDEMPOTENCY_KEYS: Queue.DEFAULT,
    TaskName.MAINTENANCE_PURGE_EXPIRED_OAUTH_STATES: Queue.DEFAULT,
}


class JobKind(StrEnum):
    AGENTIC = "agentic"
    FULLSTACK = "fullstack"
    BILLING_SYNC = "billing_sync"


@dataclass(frozen=True)
class KindSpec:
    """What runs a kind of job, and whether it counts against the plan's generation quota."""

    kind: JobKind
    task: TaskName
    is_generation: bool

    @property
    def queue(self) -> Queue:
        return TASK_QUEUES[self.task]


KINDS: dict[JobKind, KindSpec] = {
    JobKind.AGENTIC: KindSpec(JobKind.AGENTIC, TaskName.GENERATION_RUN, is_generation=True),
    JobKind.FULLSTACK: KindSpec(JobKind.FULLSTACK, TaskName.GENERATION_RUN, is_generation=True),
    JobKind.BILLING_SYNC: KindSpec(JobKind.BILLING_SYNC, TaskName.BILLING_SYNC_CUSTOMER, is_generation=False),
}
GENERATION_KINDS = tuple(spec.kind for spec in KINDS.values() if spec.is_generation)


def task_for(kind: str) -> TaskName:
    """The task that runs a job of `kind`."""
    return KINDS[JobKind(kind)].task
