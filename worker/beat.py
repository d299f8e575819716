"""The beat scheduler, with a heartbeat that operators and the admin stats can read."""
from __future__ import annotations

import logging
import time

from celery.beat import PersistentScheduler
from redis import Redis
from redis.exceptions import RedisError

from shared import heartbeat

logger = logging.getLogger(__name__)
HEARTBEAT_EVERY = 10.0


class HeartbeatScheduler(PersistentScheduler):
    """Celery's file-backed scheduler that also records, every few seconds, that it is alive."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = self.app.conf.devora_settings
        self._redis = Redis.from_url(settings.resolved_state_url, socket_timeout=settings.redis_socket_timeout,
                                     socket_connect_timeout=settings.redis_socket_timeout)
        self._last = 0.0

    def tick(self, *args, **kwargs) -> float:
        interval = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last >= HEARTBEAT_EVERY:
            try:
                heartbeat.beat(self._redis)
                self._last = now
            except (RedisError, OSError) as error:
                logger.warning("beat heartbeat not written: %s", type(error).__name__)
        return min(interval, HEARTBEAT_EVERY)
