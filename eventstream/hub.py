"""One XREAD loop per process, fanning each new event out to its owner's open streams.

Every published event also lands in one shared feed (shared.events.FEED_KEY) carrying its
owner and its id in the owner's stream. The hub follows the feed with one blocking XREAD
of one key, however many users it serves, and hands each event to the subscriptions of its
owner. A subscription receives the events the hub reads after it joined; what came before
that, the subscriber reads from the owner's own stream, and it skips anything it has
already sent, so every event reaches it once, in order. When Redis fails the hub tells
every subscriber to resync and retries with backoff; the process and its connections stay up.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from eventstream.metrics import STORE_ERRORS
from shared.events import FEED_KEY, JobEvent, parse_event_id

logger = logging.getLogger(__name__)

# What a subscriber's queue can hold besides events.
RESYNC = "resync"      # Redis failed: the position must be checked again
OVERFLOW = "overflow"  # the client reads too slowly: its stream ends, it resumes on reconnect
CLOSE = "close"        # the process is shutting down


@dataclass(eq=False)
class Subscription:
    owner_id: uuid.UUID
    max_backlog: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    overflowed: bool = False

    def offer(self, item: JobEvent | str) -> None:
        if self.overflowed:
            return
        if isinstance(item, JobEvent) and self.queue.qsize() >= self.max_backlog:
            self.overflowed = True
            item = OVERFLOW
        self.queue.put_nowait(item)


class Hub:
    """Owns the process's feed reader and its subscriptions."""

    def __init__(self, redis: aioredis.Redis, *, max_backlog: int, block_ms: int = 2000) -> None:
        # A connection of its own: XREAD BLOCK holds it for up to block_ms at a time.
        self._redis = redis
        self._max_backlog = max_backlog
        self._block_ms = block_ms
        self._subscribers: dict[str, set[Subscription]] = {}
        self._position = "$"
        self._task: asyncio.Task | None = None
        self._down = False
        self.healthy = asyncio.Event()
        self.closing = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        self.close_all()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def close_all(self) -> None:
        """Tell every subscriber to end its stream (shutdown)."""
        self.closing.set()
        self._offer_all(CLOSE)

    def subscribe(self, owner_id: uuid.UUID) -> Subscription:
        """Receive `owner_id`'s events from the next feed read on."""
        sub = Subscription(owner_id, self._max_backlog)
        self._subscribers.setdefault(str(owner_id), set()).add(sub)
        if self.closing.is_set():
            sub.offer(CLOSE)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        owner = str(sub.owner_id)
        subs = self._subscribers.get(owner)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[owner]

    async def wait_healthy(self) -> bool:
        """Wait until Redis answers again; False when the process is closing instead."""
        healthy = asyncio.create_task(self.healthy.wait())
        closing = asyncio.create_task(self.closing.wait())
        try:
            await asyncio.wait({healthy, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            healthy.cancel()
            closing.cancel()
        return not self.closing.is_set()

    def mark_unhealthy(self, error: BaseException) -> None:
        """Redis failed (here or in a subscriber's own read): every subscriber resyncs once it is back."""
        if self._down:
            return
        self._down = True
        logger.warning("event store unreachable (%s); streams wait and resync", type(error).__name__)
        STORE_ERRORS.inc()
        self.healthy.clear()
        self._offer_all(RESYNC)

    def _offer_all(self, item: str) -> None:
        for subs in self._subscribers.values():
            for sub in subs:
                sub.offer(item)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if not self.healthy.is_set():
                    await self._connect()
                reply = await self._redis.xread({FEED_KEY: self._position}, count=500, block=self._block_ms)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                self.mark_unhealthy(error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            for _key, entries in reply:
                self._position = entries[-1][0]
                self._deliver(entries)

    async def _connect(self) -> None:
        # Start from the feed's end: subscribers (re)joining now read what came before from
        # their owners' streams, so the hub need not replay anything.
        newest = await self._redis.xrevrange(FEED_KEY, "+", "-", count=1)
        self._position = newest[0][0] if newest else "0-0"
        logger.info("event store reachable")
        self._down = False
        self.healthy.set()

    def _deliver(self, entries) -> None:
        for _entry_id, fields in entries:
            subs = self._subscribers.get(fields.get("owner", ""))
            if subs:
                event = JobEvent.from_feed(fields)
                for sub in subs:
                    sub.offer(event)


def id_after(event_id: str, position: str) -> bool:
    return parse_event_id(event_id) > parse_event_id(position)
