"""A real Celery worker, in this process, on the test Redis and database."""
from __future__ import annotations

import pytest
from celery.contrib.testing.worker import start_worker

from shared.taskqueue import QUEUES
from worker.app import create_celery


@pytest.fixture
def celery_app(settings):
    app = create_celery(settings)
    app.loader.import_default_modules()
    return app


@pytest.fixture
def worker(celery_app, app):
    """A thread-pool worker consuming every queue; `app` first, so the schema is clean."""
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING",
                      queues=list(QUEUES), shutdown_timeout=30) as running:
        yield running
