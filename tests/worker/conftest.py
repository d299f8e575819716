"""A real Celery worker, in this process, on the test Redis and database."""
from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server
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


@pytest.fixture
def live_server(app):
    """The app served over real HTTP on a loopback port, for peers that call us (webhooks)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
