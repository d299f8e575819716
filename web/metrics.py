"""Prometheus metrics: request and domain counters of this process, live gauges read at scrape time.

Under gunicorn the counters are shared between workers through prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set up in gunicorn.conf.py).
"""
from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from shared.metrics_access import scrape_refusal
from web.live_metrics import LiveCollector
from web.state import state

REQUESTS = Counter("devora_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram("devora_http_request_duration_seconds", "Time to answer an HTTP request", ["route", "method"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
JOBS_SUBMITTED = Counter("devora_jobs_submitted_total", "Jobs accepted", ["kind"])
WEBHOOKS_RECEIVED = Counter("devora_webhook_events_received_total", "Stripe webhook deliveries",
                            ["type", "outcome"])
CACHE_REQUESTS = Counter("devora_cache_requests_total", "Cache lookups", ["cache", "result"])
RATE_LIMITED = Counter("devora_rate_limit_rejections_total", "Requests refused by a rate limit", ["endpoint"])


def init_metrics(app: Flask) -> None:
    """Time every request and serve /metrics."""

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("request_started", None)
        if started is not None:
            # The route template, not the path, keeps the label set bounded.
            route = request.url_rule.rule if request.url_rule else "unmatched"
            REQUESTS.labels(route, request.method, str(response.status_code)).inc()
            LATENCY.labels(route, request.method).observe(time.perf_counter() - started)
        return response

    app.add_url_rule("/metrics", "metrics", _scrape)


def _scrape() -> Response:
    _authorize_scrape()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        base = CollectorRegistry()
        MultiProcessCollector(base)
    else:
        base = REGISTRY
    live = CollectorRegistry()
    live.register(LiveCollector(state()))
    return Response(generate_latest(base) + generate_latest(live), mimetype=CONTENT_TYPE_LATEST)


def _authorize_scrape() -> None:
    refusal = scrape_refusal(state().settings, request.remote_addr, request.headers.get("Authorization", ""))
    if refusal is not None:
        raise refusal
