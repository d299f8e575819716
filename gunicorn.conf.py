"""gunicorn settings read from the working directory: metrics across workers, quiet access logs."""
import os
import shutil
import tempfile

# Prometheus counters are shared by the workers through files in this directory; it
# must exist, be empty at start and be set before any worker imports prometheus_client.
_configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_metrics_dir = _configured or tempfile.mkdtemp(prefix="devora-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

# The request line is not limited here. The API's own limits are larger than gunicorn's largest
# (8190 bytes): a file path of 1,024 characters is up to 12 KiB percent-encoded, and the admin's
# customer lookup takes 100 ids of up to 255 characters. A request beyond them is refused by the
# app with a 422 problem instead of gunicorn's HTML 414; the proxy in front bounds the line (see
# docs/OPERATIONS.md).
limit_request_line = 0

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
