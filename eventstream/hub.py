"""One XREAD loop per process, fanning each user's new events out to that user's open streams.

The hub reads, in one blocking XREAD, every user stream that has a subscriber, from the
last id it delivered for each. A subscriber joining a stream the hub already reads
learns the hub's position for it, reads what lies between its own position and that one
itself, and skips anything it has already sent, so it sees every event once, in order.
When Redis fails the hub tells every subscriber to resync and retries with backoff; the
process and its open connections stay up.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from eventstream.metrics import STORE_ERRORS
from shared.events import JobEvent, parse_event_id, stream_key

logger = logging.getLogger(__name__)

# What a subscriber's queue can hold besides events.
RESYNC = "resync"      # Redis failed: the position must be checked again
OVERFLOW = "overflow"  # the client reads too slowly: its stream ends, it resumes on reconnect
CLOSE = "close"        # the process is shutting down
WAKE_PREFIX = "devora:events:wake:"


@dataclass(eq=False)
class Subscription:
    owner_id: uuid.UUID
    key: str
    # The hub's position in the stream when this subscription joined: the queue receives
    # exactly the entries after it.
    hub_position: str
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
    """Owns the process's XREAD loop and its subscriptions."""

    def __init__(self, redis: aioredis.Redis, *, max_backlog: int, block_ms: int = 2000) -> None:
        # A connection of its own: XREAD BLOCK holds it for up to block_ms at a time.
        self._redis = redis
        self._max_backlog = max_backlog
        self._block_ms = block_ms
        self._positions: dict[str, str] = {}
        self._generations: dict[str, int] = {}
        self._subscribers: dict[str, set[Subscription]] = {}
        self._wake_key = f"{WAKE_PREFIX}{uuid.uuid4().hex}"
        self._wake_position = "0-0"
        self._wake_pending = False
        self._task: asyncio.Task | None = None
        self.healthy = asyncio.Event()
        self.closing = asyncio.Event()
        self._down = False

    @property
    def open_subscriptions(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        self.close_all()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self._redis.delete(self._wake_key)
        except RedisError:
            pass

    def close_all(self) -> None:
        """Tell every subscriber to end its stream (shutdown)."""
        self.closing.set()
        for subs in self._subscribers.values():
            for sub in subs:
                sub.offer(CLOSE)

    def subscribe(self, owner_id: uuid.UUID, after: str) -> Subscription:
        """Join `owner_id`'s stream; a stream new to the hub is read from `after`."""
        key = stream_key(owner_id)
        if key not in self._positions:
            self._positions[key] = after
            self._generations[key] = self._generations.get(key, 0) + 1
            self._subscribers[key] = set()
            self._wake()
        sub = Subscription(owner_id, key, self._positions[key], self._max_backlog)
        self._subscribers[key].add(sub)
        if self.closing.is_set():
            sub.offer(CLOSE)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.key)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subscribers[sub.key]
            del self._positions[sub.key]

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
        for subs in self._subscribers.values():
            for sub in subs:
                sub.offer(RESYNC)

    def _wake(self) -> None:
        """Interrupt the blocking XREAD so it includes a newly subscribed stream."""
        if self._wake_pending or not self.healthy.is_set():
            return
        self._wake_pending = True
        asyncio.create_task(self._send_wake())

    async def _send_wake(self) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
                pipe.expire(self._wake_key, 300)
                await pipe.execute()
        except RedisError:
            pass  # the loop's own XREAD will fail too and report it
        finally:
            self._wake_pending = False

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            # The wake stream is always read, so a new subscription can interrupt the block.
            request = {**self._positions, self._wake_key: self._wake_position}
            generations = dict(self._generations)
            try:
                if not self.healthy.is_set():
                    await self._redis.ping()
                    logger.info("event store reachable")
                    self._down = False
                    self.healthy.set()
                reply = await self._redis.xread(request, count=200, block=self._block_ms)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                self.mark_unhealthy(error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            self._deliver(reply, generations)

    def _deliver(self, reply, generations: dict[str, int]) -> None:
        for key, entries in reply:
            if key == self._wake_key:
                self._wake_position = entries[-1][0]
                continue
            # Left and rejoined while the read was in flight: the rejoin's position rules.
            if key not in self._positions or self._generations.get(key) != generations.get(key):
                continue
            subs = self._subscribers.get(key, ())
            for entry_id, fields in entries:
                event = JobEvent.from_entry(entry_id, fields)
                for sub in subs:
                    sub.offer(event)
            self._positions[key] = entries[-1][0]


def id_after(event_id: str, position: str) -> bool:
    return parse_event_id(event_id) > parse_event_id(position)
