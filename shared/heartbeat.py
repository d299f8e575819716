"""The beat scheduler's heartbeat, kept in Redis so any process can tell how long ago beat ticked."""
from __future__ import annotations

import time

from redis import Redis
from redis.exceptions import RedisError

KEY = "devora:beat:heartbeat"


def beat(redis: Redis, ttl_seconds: int = 3600) -> None:
    redis.set(KEY, f"{time.time():.3f}", ex=ttl_seconds)


def beat_age_seconds(redis: Redis) -> float | None:
    """Seconds since beat last ticked; None if it never did (or the key expired, or Redis is down)."""
    try:
        value = redis.get(KEY)
    except (RedisError, OSError):
        return None
    return None if value is None else max(0.0, time.time() - float(value))
