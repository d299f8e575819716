"""Gauges read from the database, Redis and the broker at scrape time.

Jobs and webhook events finish in worker processes, possibly on other hosts; the
database is where their outcome is visible to whoever scrapes.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from shared.heartbeat import beat_age_seconds
from shared.jobs.states import JobStatus
from shared.models import Job, WebhookEvent
from shared.models.base import utcnow
from shared.queues import queue_depths

logger = logging.getLogger(__name__)
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600)


class LiveCollector(Collector):
    def __init__(self, app_state) -> None:
        self._state = app_state

    def collect(self):
        yield from self._queues()
        try:
            yield from self._database()
        except Exception as error:  # noqa: BLE001 - a scrape reports what it can
            logger.warning("database metrics unavailable: %s", type(error).__name__)
        age = beat_age_seconds(self._state.redis)
        if age is not None:
            yield GaugeMetricFamily("devora_beat_heartbeat_age_seconds", "Seconds since beat last ticked", value=age)

    def _queues(self):
        depth = GaugeMetricFamily("devora_queue_depth", "Messages waiting in each broker queue", labels=["queue"])
        for queue, count in queue_depths(self._state.producer).items():
            if count is not None:
                depth.add_metric([queue], count)
        yield depth

    def _database(self):
        now = utcnow()
        with self._state.db.transaction() as session:
            by_state = session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)).all()
            oldest = session.scalar(select(func.min(Job.created_at)).where(Job.status == JobStatus.QUEUED))
            recent = session.execute(select(Job.kind, Job.started_at, Job.finished_at).where(
                Job.finished_at >= now - timedelta(hours=1), Job.started_at.is_not(None))).all()
            events = session.execute(select(WebhookEvent.type, WebhookEvent.status, func.count())
                                     .group_by(WebhookEvent.type, WebhookEvent.status)).all()
        jobs = GaugeMetricFamily("devora_jobs", "Jobs by kind and state", labels=["kind", "state"])
        for kind, status, count in by_state:
            jobs.add_metric([kind, status], count)
        yield jobs
        yield GaugeMetricFamily("devora_oldest_queued_job_age_seconds", "Age of the oldest job still queued",
                                value=(now - oldest).total_seconds() if oldest else 0.0)
        yield _durations(recent)
        webhook = GaugeMetricFamily("devora_webhook_events", "Stored webhook events by type and state",
                                    labels=["type", "state"])
        for event_type, status, count in events:
            webhook.add_metric([event_type, status], count)
        yield webhook


def _durations(rows) -> GaugeHistogramMetricFamily:
    family = GaugeHistogramMetricFamily("devora_job_duration_seconds",
                                        "Run time of jobs finished in the last hour", labels=["kind"])
    per_kind: dict[str, list[float]] = {}
    for kind, started, finished in rows:
        per_kind.setdefault(kind, []).append((finished - started).total_seconds())
    for kind, seconds in per_kind.items():
        buckets = [(str(bound), sum(1 for s in seconds if s <= bound)) for bound in DURATION_BUCKETS]
        buckets.append(("+Inf", len(seconds)))
        family.add_metric([kind], buckets, gsum_value=sum(seconds))
    return family
