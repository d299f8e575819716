"""gunicorn settings read from the working directory: metrics across workers, quiet access logs."""
import os
import shutil
import tempfile

# Prometheus counters are shared by the workers through files in this directory; it
# must exist, be empty at start and be set before any worker imports prometheus_client.
_configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_metrics_dir = _configured or tempfile.mkdtemp(prefix="devora-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

# The path without its query string: OAuth callbacks carry codes and states there.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss "%({x-request-id}o)s"'


def on_starting(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def on_exit(server):
    if not _configured:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
