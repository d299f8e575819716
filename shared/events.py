"""Job events: what watchers of a job are told, kept per user in a Redis stream.

A worker (or the web process) publishes an event after the change it describes has
committed; the job row stays the source of truth, so an event lost to a Redis outage
costs a watcher a snapshot, never a wrong state. Each user has one stream
(`devora:events:user:<id>`), trimmed to about `EVENTS_MAX_LENGTH` entries and deleted
`EVENTS_RETENTION_SECONDS` after its last event. A stream entry's id is the event's
server-sent-event id, so a client resumes after the last id it saw; when that id is no
longer kept, the stream process sends a `job.snapshot` of each job instead (read from
the job rows) and goes on live.

Payloads by type (all small; `at` and `job_id` are on every event):

    job.queued      {"kind"}
    job.started     {"attempt", "max_attempts"}
    job.progress    {"percent", "stage"}
    job.file        {"path", "action": "started" | "generated" | "dropped"}
    job.retrying    {"attempt", "next_retry_at", "error_type"}
    job.succeeded   {} or a short summary, e.g. {"files": 12}
    job.failed      {"error_type", "error_message"}
    job.canceled    {}
    job.snapshot    the job as GET /api/v2/jobs/{id} shows it (sent by the stream process only)

`job.file` tells what the generation did with a file in memory, never that it was stored: a
file is "started" when the provider begins it (a model's answer reaches its start line; a
rendered file is started and generated at once), "generated" when it is complete in the run's
output, and "dropped" when a file started or generated earlier is not in the output (refused,
or removed by a repair). The files reach the project only with `job.succeeded`.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from shared.settings import Settings

logger = logging.getLogger(__name__)

# Where the stream process serves a user's events (GET); the API issues stream tokens below it.
EVENTS_PATH = "/api/v2/events"

JOB_QUEUED = "job.queued"
JOB_STARTED = "job.started"
JOB_PROGRESS = "job.progress"
JOB_FILE = "job.file"
JOB_RETRYING = "job.retrying"
JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
JOB_CANCELED = "job.canceled"
JOB_SNAPSHOT = "job.snapshot"
PUBLISHED_TYPES = frozenset({JOB_QUEUED, JOB_STARTED, JOB_PROGRESS, JOB_FILE, JOB_RETRYING, JOB_SUCCEEDED,
                             JOB_FAILED, JOB_CANCELED})
FINAL_TYPES = frozenset({JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELED})
# An event is a notification, not a result: anything bigger belongs on the job row.
MAX_PAYLOAD_BYTES = 4096
KEY_PREFIX = "devora:events:user:"
# Every event also goes to one shared feed, so a stream process follows all users with one
# small XREAD instead of one naming every user it serves. It is read live, never resumed.
FEED_KEY = "devora:events:feed"
FEED_MAX_LENGTH = 100_000
# Catch-up reads go in pages of this many entries.
PAGE = 200

# The user's stream and the feed in one atomic step; the feed entry names the owner and
# carries the user-stream id, which is the event's id everywhere.
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                      'type', ARGV[3], 'job_id', ARGV[4], 'at', ARGV[5], 'payload', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'owner', ARGV[8], 'id', id,
           'type', ARGV[3], 'job_id', ARGV[4], 'at', ARGV[5], 'payload', ARGV[6])
return id
"""


def stream_key(owner_id: uuid.UUID | str) -> str:
    return f"{KEY_PREFIX}{owner_id}"


def parse_event_id(text: str) -> tuple[int, int]:
    """A stream entry id ("<ms>-<seq>") as a comparable pair; ValueError when it is not one."""
    ms, sep, seq = text.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit() or len(text) > 41:
        raise ValueError(f"not an event id: {text[:50]!r}")
    return int(ms), int(seq)


def event_id_ms(text: str) -> int:
    """The Redis server time (ms since the epoch) at which the entry was added."""
    return parse_event_id(text)[0]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobEvent:
    """One event about one job; `id` is the stream entry id (None for snapshots)."""

    type: str
    job_id: str
    at: str
    payload: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    def to_json(self) -> str:
        """The `data` of the server-sent event."""
        return json.dumps({"type": self.type, "job_id": self.job_id, "at": self.at, "payload": self.payload},
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> JobEvent:
        return cls(type=fields["type"], job_id=fields["job_id"], at=fields["at"],
                   payload=json.loads(fields.get("payload") or "{}"), id=entry_id)

    @classmethod
    def from_feed(cls, fields: dict[str, str]) -> JobEvent:
        """A feed entry as the event it announces (with its id in the owner's stream)."""
        return cls.from_entry(fields["id"], fields)

    @classmethod
    def from_json(cls, data: str, event_id: str | None = None) -> JobEvent:
        body = json.loads(data)
        return cls(type=body["type"], job_id=body["job_id"], at=body["at"], payload=body.get("payload") or {},
                   id=event_id)


def encode_fields(job_id: uuid.UUID | str, event_type: str, payload: dict[str, Any] | None) -> dict[str, str]:
    """The stream entry of an event; ValueError for an unknown type or a payload that is not small JSON."""
    if event_type not in PUBLISHED_TYPES:
        raise ValueError(f"unknown job event type {event_type!r}")
    encoded = json.dumps(payload or {}, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    if len(encoded.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{event_type} payload is {len(encoded.encode())} bytes; at most {MAX_PAYLOAD_BYTES}")
    return {"type": event_type, "job_id": str(job_id), "at": now_iso(), "payload": encoded}


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class EventStore:
    """Publishes job events to each user's stream and reads them back (synchronous: workers, web, tools)."""

    def __init__(self, redis: Redis, *, max_length: int, retention_seconds: int) -> None:
        self.redis = redis
        self.max_length = max_length
        self.retention_seconds = retention_seconds
        self._publish = redis.register_script(_PUBLISH)

    @classmethod
    def from_settings(cls, settings: Settings) -> EventStore:
        """A store on the events Redis, with the request-path socket timeouts; connects on first use."""
        redis = Redis.from_url(settings.resolved_events_url, decode_responses=True,
                               socket_timeout=settings.redis_socket_timeout,
                               socket_connect_timeout=settings.redis_socket_timeout)
        return cls(redis, max_length=settings.events_max_length, retention_seconds=settings.events_retention_seconds)

    def publish(self, owner_id: uuid.UUID | str, job_id: uuid.UUID | str, event_type: str,
                payload: dict[str, Any] | None = None) -> str | None:
        """Append an event to the owner's stream; its id, or None when Redis could not take it.

        Call it after the transaction that made the change has committed. A Redis failure
        is logged and swallowed: the job goes on, and watchers resync from the job row.
        """
        fields = encode_fields(job_id, event_type, payload)
        try:
            entry_id = self._publish(keys=[stream_key(owner_id), FEED_KEY], args=[
                self.max_length, self.retention_seconds, fields["type"], fields["job_id"], fields["at"],
                fields["payload"], FEED_MAX_LENGTH, str(owner_id)])
        except RedisError as error:
            logger.warning("job %s: %s not published: %s", job_id, event_type, type(error).__name__)
            return None
        return entry_id

    def is_kept(self, owner_id: uuid.UUID | str, event_id: str) -> bool:
        """Whether the entry `event_id` is still in the stream: then nothing after it was trimmed."""
        return bool(self.redis.xrange(stream_key(owner_id), event_id, event_id, count=1))

    def read_after(self, owner_id: uuid.UUID | str, after_id: str = "0-0", count: int = PAGE) -> list[JobEvent]:
        """Up to `count` events after `after_id`, oldest first."""
        entries = self.redis.xrange(stream_key(owner_id), f"({after_id}", "+", count=count)
        return [JobEvent.from_entry(entry_id, fields) for entry_id, fields in entries]


class EventReader:
    """The stream process's reads (asyncio): where a stream ends, whether an id is kept, what follows it."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def head(self, key: str) -> str | None:
        """The id of the newest entry, or None for an empty (or expired) stream."""
        newest = await self.redis.xrevrange(key, "+", "-", count=1)
        return newest[0][0] if newest else None

    async def is_kept(self, key: str, event_id: str) -> bool:
        return bool(await self.redis.xrange(key, event_id, event_id, count=1))

    async def after(self, key: str, after_id: str) -> list[JobEvent]:
        """Every event after `after_id`, oldest first."""
        events: list[JobEvent] = []
        while True:
            entries = await self.redis.xrange(key, f"({after_id}", "+", count=PAGE)
            events += [JobEvent.from_entry(entry_id, fields) for entry_id, fields in entries]
            if len(entries) < PAGE:
                return events
            after_id = entries[-1][0]
