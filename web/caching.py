"""Cache reads and writes that degrade to a miss when Redis is unreachable.

Every key carries the version of what it caches (a user's content version, an account's invoice
version), read from the database on each request; a change moves the version and so the key, and
an entry is never stale, only unused. Such entries are also kept in this process (the near
cache): a repeated read is then served without a Redis round trip, which was the larger part of
a cached list's time (docs/PERFORMANCE.md). Redis still shares what one worker rendered with
the others.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from cachelib.serializers import JSONSerializer
from redis.exceptions import RedisError

from web.extensions import cache
from web.metrics import CACHE_REQUESTS

logger = logging.getLogger(__name__)


class JSONCacheSerializer(JSONSerializer):
    """JSON, not pickle, so a value read back from Redis can never run code; a miss stays None."""

    def loads(self, bvalue, *args, **kwargs):
        return None if bvalue is None else super().loads(bvalue, *args, **kwargs)


class NearCache:
    """The most recently used entries of this process, each until its timeout; thread-safe."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def set(self, key: str, value: Any, timeout: int) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + timeout, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# A rendered page of 100 projects is about 40 KB: at most about 10 MB a process.
near = NearCache(max_entries=256)
# How long a value read from Redis is kept here, at most (its own timeout is not sent back).
NEAR_SECONDS = 60


def cache_get(key: str) -> Any | None:
    """The cached value, or None on a miss or when Redis is unreachable (counted by key family).
    `key` must carry the version of what it caches (see the module's docstring)."""
    family = key.split(":", 1)[0]
    value = near.get(key)
    if value is not None:
        CACHE_REQUESTS.labels(family, "hit").inc()
        return value
    try:
        value = cache.get(key)
    except (RedisError, OSError) as error:
        logger.warning("cache unavailable, reading through: %s", error.__class__.__name__)
        CACHE_REQUESTS.labels(family, "error").inc()
        return None
    CACHE_REQUESTS.labels(family, "miss" if value is None else "hit").inc()
    if value is not None:
        near.set(key, value, NEAR_SECONDS)
    return value


def cache_set(key: str, value: Any, timeout: int) -> None:
    near.set(key, value, min(timeout, NEAR_SECONDS))
    try:
        cache.set(key, value, timeout=timeout)
    except (RedisError, OSError) as error:
        logger.warning("cache unavailable, not storing: %s", error.__class__.__name__)
