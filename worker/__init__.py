"""The Celery application: `celery -A worker worker|beat|flower`."""
from worker.app import create_celery

app = create_celery()

__all__ = ["app", "create_celery"]
