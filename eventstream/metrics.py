"""The stream process's Prometheus metrics, served on its own /metrics.

The open-streams gauge sums live processes when several share PROMETHEUS_MULTIPROC_DIR.
"""
from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

STREAMS_OPEN = Gauge("devora_event_streams_open", "Event streams open now", multiprocess_mode="livesum")
STREAMS_REFUSED = Counter("devora_event_streams_refused_total", "Event streams refused by a limit", ["limit"])
EVENTS_SENT = Counter("devora_events_sent_total", "Events written to streams", ["type"])
STORE_ERRORS = Counter("devora_event_store_errors_total", "Times the stream process lost its Redis")


def metrics_text() -> web.Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    response = web.Response(body=generate_latest(registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
