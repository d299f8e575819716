"""Open-stream limits: per user and per process, counted in this process's memory."""
from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from eventstream.metrics import STREAMS_OPEN, STREAMS_REFUSED
from shared.errors import DomainError


class TooManyStreams(DomainError):
    status, title, type_slug = 429, "Too many streams", "too-many-streams"


class StreamSlots:
    """Counts open streams; a stream beyond either limit is refused with a 429 problem."""

    def __init__(self, *, per_user: int, per_process: int, retry_after_seconds: int) -> None:
        self.per_user = per_user
        self.per_process = per_process
        self._retry_after = str(retry_after_seconds)
        self._by_user: Counter[uuid.UUID] = Counter()
        self.total = 0

    @contextmanager
    def hold(self, user_id: uuid.UUID) -> Iterator[None]:
        if self.total >= self.per_process:
            STREAMS_REFUSED.labels("process").inc()
            raise TooManyStreams(f"this server holds its limit of {self.per_process} open streams; retry shortly",
                                 headers={"Retry-After": self._retry_after})
        if self._by_user[user_id] >= self.per_user:
            STREAMS_REFUSED.labels("user").inc()
            raise TooManyStreams(f"at most {self.per_user} event streams may be open at once per user; "
                                 "close one (one stream carries all your jobs)",
                                 headers={"Retry-After": self._retry_after})
        self._by_user[user_id] += 1
        self.total += 1
        STREAMS_OPEN.inc()
        try:
            yield
        finally:
            self.total -= 1
            STREAMS_OPEN.dec()
            self._by_user[user_id] -= 1
            if not self._by_user[user_id]:
                del self._by_user[user_id]
