"""Cache reads and writes that degrade to a miss when Redis is unreachable."""
from __future__ import annotations

import logging
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


def cache_get(key: str) -> Any | None:
    """The cached value, or None on a miss or when Redis is unreachable (counted by key family)."""
    family = key.split(":", 1)[0]
    try:
        value = cache.get(key)
    except (RedisError, OSError) as error:
        logger.warning("cache unavailable, reading through: %s", error.__class__.__name__)
        CACHE_REQUESTS.labels(family, "error").inc()
        return None
    CACHE_REQUESTS.labels(family, "miss" if value is None else "hit").inc()
    return value


def cache_set(key: str, value: Any, timeout: int) -> None:
    try:
        cache.set(key, value, timeout=timeout)
    except (RedisError, OSError) as error:
        logger.warning("cache unavailable, not storing: %s", error.__class__.__name__)
