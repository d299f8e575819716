"""Helpers for the live event tests: the real stream process, a real SSE client, job rows."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
from sqlalchemy import update

from shared.events import JobEvent
from shared.models import Job
from shared.models.base import utcnow
from shared.settings import Settings
from shared.sse import EventStreamParser, ServerSentEvent, split_lines
# wait_until: the event tests take it from here, with the rest of their helpers.
from tests.peers.processes import free_port, stop_process_group, wait_until  # noqa: F401

EVENT_SETTINGS = ("events_max_length", "events_retention_seconds", "events_heartbeat_seconds", "events_retry_ms",
                  "events_token_ttl_seconds", "events_max_streams_per_user", "events_max_streams_per_process",
                  "events_stream_max_seconds", "metrics_allowed_networks")


def stream_env(settings: Settings) -> dict[str, str]:
    """The environment that gives the stream process the same settings as the test."""
    env = {**os.environ, "DEVORA_ENV": "test", "DATABASE_URL": settings.database_url,
           "REDIS_URL": settings.resolved_redis_url, "SECRET_KEY": settings.secret_key.get_secret_value(),
           "CORS_ORIGINS": ",".join(settings.allowed_origins), "LOG_LEVEL": "INFO"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({name.upper(): str(getattr(settings, name)) for name in EVENT_SETTINGS})
    return env


@dataclass
class StreamProcess:
    """`python -m eventstream` on a free loopback port, its stderr in a file."""

    settings: Settings
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"{self.url}/api/v2/events"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"stream-{self.port}.log"

    def start(self) -> StreamProcess:
        # A scratch working directory keeps any `.env` out of the process.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "eventstream", "--port", str(self.port)],
                                            env=stream_env(self.settings), cwd=self.workdir, stdout=log,
                                            stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"stream process exited: {self.log()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"stream process did not start: {self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process_group(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metric(self, name: str) -> float | None:
        for line in requests.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None


class EventStream:
    """A real HTTP client on the stream: parsed events, and every raw line it read."""

    def __init__(self, url: str, *, token: str | None = None, headers: dict[str, str] | None = None,
                 params: dict[str, str] | None = None, read_timeout: float = 15.0) -> None:
        query = dict(params or {})
        if token:
            query["token"] = token
        self.response = requests.get(url, params=query, headers={"Accept": "text/event-stream", **(headers or {})},
                                     stream=True, timeout=(5, read_timeout))
        self.parser = EventStreamParser()
        self.lines: list[str] = []
        self._lines = split_lines(self.response.iter_content(chunk_size=None)) if self.ok else iter(())

    @property
    def ok(self) -> bool:
        return self.response.status_code == 200

    def next_line(self) -> str | None:
        """The next raw line (fed to the parser too), or None when the server ended the stream."""
        line = next(self._lines, None)
        if line is not None:
            self.lines.append(line)
            self.parser.feed(line)
        return line

    def next_message(self) -> ServerSentEvent | None:
        """The next event, or None when the server ended the stream."""
        for line in self._lines:
            self.lines.append(line)
            message = self.parser.feed(line)
            if message is not None:
                return message
        return None

    def next_event(self) -> JobEvent:
        message = self.next_message()
        assert message is not None, f"the stream ended; it sent: {self.lines}"
        return JobEvent.from_json(message.data, message.id)

    def take(self, count: int) -> list[JobEvent]:
        return [self.next_event() for _ in range(count)]

    def read_to_end(self) -> list[JobEvent]:
        """Every event until the server ends the stream cleanly (a broken one raises)."""
        events = []
        while (message := self.next_message()) is not None:
            events.append(JobEvent.from_json(message.data, message.id))
        return events

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def new_job(db, owner_id: uuid.UUID, *, status: str = "queued", updated_at: datetime | None = None,
            kind: str = "fullstack") -> uuid.UUID:
    """A job row as the API writes one (the worker's part is played by the test)."""
    with db.transaction() as session:
        job = Job(owner_id=owner_id, kind=kind, payload={}, max_attempts=3,
                  status=status, progress_stage=status)
        if updated_at is not None:
            job.created_at = job.updated_at = updated_at
        session.add(job)
        session.flush()
        return job.id


def set_job(db, job_id: uuid.UUID, **values) -> None:
    """Change a job row and commit, as a worker does before it publishes."""
    values.setdefault("updated_at", utcnow())
    with db.transaction() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))
