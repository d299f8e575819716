"""GET /api/v2/events: one user's job events as server-sent events, resumable by id."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp_sse import EventSourceResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from eventstream.access_log import log_stream_end
from eventstream.auth import AccountChecks, Reader, authenticate
from eventstream.hub import CLOSE, OVERFLOW, RESYNC, Hub, Subscription, id_after
from eventstream.metrics import EVENTS_SENT
from eventstream.slots import StreamSlots
from shared import logcontext
from shared.db import Database
from shared.errors import NotFound, ServiceUnavailable, Unprocessable
from shared.event_snapshots import owns_job, snapshot_events
from shared.events import EventReader, JobEvent, event_id_ms, parse_event_id, stream_key
from shared.security import TokenService
from shared.settings import Settings
from shared.stream_tokens import StreamTokens

logger = logging.getLogger(__name__)
# A client that cannot take a write for this long is cut off (aiohttp-sse aborts it).
SEND_TIMEOUT_SECONDS = 30.0


@dataclass
class StreamContext:
    """What every stream of this process shares."""

    settings: Settings
    db: Database
    tokens: TokenService
    stream_tokens: StreamTokens
    reader: EventReader
    hub: Hub
    slots: StreamSlots
    # Whether a stream's reader may still read: checked as it opens, then on every heartbeat.
    accounts: AccountChecks = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = AccountChecks(self.db.engine)

    async def in_session(self, function, *args, **kwargs):
        """Run a database read in a thread, so the event loop never waits on the database."""
        def call():
            with self.db.sessions() as session:
                return function(session, *args, **kwargs)

        return await asyncio.to_thread(call)


CONTEXT = web.AppKey("stream_context", StreamContext)


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Every event of the caller's jobs (or of `?job_id=`), after `Last-Event-ID` when given."""
    ctx = request.app[CONTEXT]
    reader = authenticate(request, ctx.tokens, ctx.stream_tokens)
    owner_id = reader.user_id
    logcontext.user_id.set(str(owner_id))
    # A signature is not enough: the account must be active and the login not logged out.
    await ctx.accounts.require(reader)
    job_id = _job_id(request)
    last_id = _last_event_id(request)
    with ctx.slots.hold(owner_id):
        if job_id is not None:
            try:
                owned = await ctx.in_session(owns_job, owner_id, job_id)
            except SQLAlchemyError:
                raise ServiceUnavailable("the job database did not answer; retry shortly",
                                         headers={"Retry-After": "5"}) from None
            if not owned:
                raise NotFound("job not found")
        response = EventSourceResponse(ping_interval=ctx.settings.events_heartbeat_seconds,
                                       send_timeout=SEND_TIMEOUT_SECONDS)
        # no-transform: proxies must not compress (and so buffer) the stream.
        response.headers["Cache-Control"] = "no-cache, no-transform"
        response.headers["Content-Type"] = "text/event-stream; charset=utf-8"
        started, how = time.monotonic(), "ended"
        await response.prepare(request)
        try:
            async with response:
                await response.write(f"retry: {ctx.settings.events_retry_ms}\n\n".encode())
                follower = _Follower(ctx, response, reader, job_id, last_id)
                await follower.run()
                if follower.refusal is not None:
                    how = "access revoked"
                elif not response.is_connected():
                    how = "client closed"
        except asyncio.CancelledError:
            how = "client closed"
            raise
        except (ConnectionError, TimeoutError):
            how = "client closed"  # or stalled: nothing to tell it
        except Exception:
            # Headers are sent: ending the stream is the only answer left; the client resumes.
            how = "failed"
            logger.exception("stream of user %s failed", owner_id)
        finally:
            log_stream_end(request, response, time.monotonic() - started, how)
        return response


def _job_id(request: web.Request) -> uuid.UUID | None:
    raw = request.query.get("job_id")
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Unprocessable("job_id must be a UUID", field="query.job_id") from None


def _last_event_id(request: web.Request) -> str | None:
    # The header wins: EventSource reconnects to the URL it was opened with (whose query may
    # hold an older last_event_id) and sends the newest id in the header.
    raw, where = request.headers.get("Last-Event-ID"), "header.Last-Event-ID"
    if not raw:
        raw, where = request.query.get("last_event_id"), "query.last_event_id"
    if not raw:
        return None
    try:
        parse_event_id(raw)
    except ValueError:
        raise Unprocessable("Last-Event-ID must be an id this stream sent (<ms>-<seq>)", field=where) from None
    return raw


class _Follower:
    """One client's position in its user's stream, and the loop that keeps it moving."""

    def __init__(self, ctx: StreamContext, response: EventSourceResponse, reader: Reader,
                 job_id: uuid.UUID | None, last_id: str | None) -> None:
        self.ctx, self.hub, self.response = ctx, ctx.hub, response
        self.reader, self.owner_id = reader, reader.user_id
        self.job_id, self.key = job_id, stream_key(reader.user_id)
        # The last id the client has: it resumes from here when the stream still keeps it.
        self.last_sent = last_id
        # When the client last knew its jobs' states (ms): a snapshot covers changes since.
        self.known_ms = event_id_ms(last_id) if last_id else None
        self.deadline = time.monotonic() + ctx.settings.events_stream_max_seconds
        self._hangup: asyncio.Future | None = None
        self._recheck: asyncio.Future | None = None
        # Why the stream was ended early: the account was deactivated or the login logged out.
        self.refusal: str | None = None

    async def run(self) -> None:
        # The heartbeat task ends when a write fails: a second way, besides cancellation, to
        # notice a client that went away. The account check ends when access was revoked.
        self._hangup = asyncio.ensure_future(self.response.wait())
        self._recheck = asyncio.ensure_future(self._recheck_account())
        try:
            await self._follow()
        finally:
            self._hangup.cancel()
            self._recheck.cancel()
            if self._recheck.done() and not self._recheck.cancelled() and self._recheck.exception() is not None:
                logger.error("stream of user %s: the account check failed; the stream was ended", self.owner_id,
                             exc_info=self._recheck.exception())

    async def _recheck_account(self) -> None:
        """Return once the reader may no longer read, checking every EVENTS_HEARTBEAT_SECONDS.

        A database that does not answer keeps the stream open (a new one gets 503 meanwhile);
        the next check that gets an answer decides.
        """
        interval = self.ctx.settings.events_heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                refusal = await self.ctx.accounts.refusal(self.reader)
            except SQLAlchemyError as error:
                logger.warning("stream of user %s: its account could not be checked (%s)", self.owner_id,
                               type(error).__name__)
                continue
            if refusal is not None:
                logger.info("stream of user %s ended: %s", self.owner_id, refusal)
                self.refusal = refusal
                return

    async def _follow(self) -> None:
        if not self.hub.healthy.is_set():
            # Redis is away: the job rows still tell where things stand.
            if not await self._snapshot():
                return
        while True:
            if not self.hub.healthy.is_set() and not await self._until_deadline(self.hub.wait_healthy()):
                return
            try:
                start = await self._position()
            except RedisError as error:
                self.hub.mark_unhealthy(error)
                continue
            if start is None:
                return
            subscription = self.hub.subscribe(self.owner_id)
            try:
                outcome = await self._relay(subscription, start)
            finally:
                self.hub.unsubscribe(subscription)
            if outcome != RESYNC:
                return

    async def _position(self) -> str | None:
        """Where to read from: after the client's id while it is kept, else the head after a snapshot."""
        if self.last_sent and await self.ctx.reader.is_kept(self.key, self.last_sent):
            return self.last_sent
        head = await self.ctx.reader.head(self.key)
        if not await self._snapshot():
            return None
        return head or "0-0"

    async def _relay(self, subscription: Subscription, start: str) -> str:
        """Send what the owner's stream holds after `start`, then what the hub hands over."""
        position = start
        # The subscription already collects what the hub reads from now on; what was
        # published before comes from the owner's stream, and the overlap is skipped.
        try:
            missed = await self.ctx.reader.after(self.key, start)
        except RedisError as error:
            self.hub.mark_unhealthy(error)
            return RESYNC
        for event in missed:
            position = event.id
            await self._send_if_wanted(event)
        while True:
            item = await self._until_deadline(subscription.queue.get())
            if item in (None, CLOSE, OVERFLOW):
                return CLOSE
            if item == RESYNC:
                return RESYNC
            if id_after(item.id, position):
                position = item.id
                await self._send_if_wanted(item)

    async def _send_if_wanted(self, event: JobEvent) -> None:
        if self.job_id is not None and event.job_id != str(self.job_id):
            return
        await self.response.send(event.to_json(), id=event.id)
        EVENTS_SENT.labels(event.type).inc()
        self.last_sent = event.id
        self.known_ms = max(self.known_ms or 0, event_id_ms(event.id))

    async def _snapshot(self) -> bool:
        """Send each job's current state (no ids: the client keeps its position); False if the database failed."""
        taken_ms = int(time.time() * 1000)
        try:
            events = await self.ctx.in_session(snapshot_events, self.owner_id, job_id=self.job_id,
                                               changed_since_ms=self.known_ms)
        except SQLAlchemyError:
            logger.warning("no snapshot for user %s: the database did not answer; ending the stream", self.owner_id)
            return False
        for event in events:
            await self.response.send(event.to_json())
            EVENTS_SENT.labels(event.type).inc()
        self.known_ms = taken_ms
        return True

    async def _until_deadline(self, awaitable):
        """The awaitable's result, or None once the stream's lifetime is over, the client has gone or its
        access was revoked."""
        waiting = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({waiting, self._hangup, self._recheck},
                                         timeout=max(0.0, self.deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        return waiting.result() if waiting in done else None
