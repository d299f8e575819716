"""The stream process's aiohttp application: /api/v2/events, health, readiness and metrics."""
from __future__ import annotations

import re
import uuid

import aiohttp_cors
from aiohttp import web
from redis import asyncio as aioredis

from eventstream.hub import Hub
from eventstream.metrics import metrics_text
from eventstream.problems import domain_problem, problem, problems_middleware
from eventstream.slots import StreamSlots
from eventstream.streams import CONTEXT, StreamContext, stream_events
from shared import logcontext
from shared.db import Database
from shared.events import EVENTS_PATH, EventReader
from shared.metrics_access import scrape_refusal
from shared.security import TokenService
from shared.settings import Settings
from shared.stream_tokens import StreamTokens

_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The hub's XREAD blocks this long; its socket must wait longer than that.
BLOCK_MS = 2000


def create_app(settings: Settings) -> web.Application:
    """The application; Redis and the database are reached only once it runs."""
    app = web.Application(middlewares=[_request_ids, problems_middleware])
    redis_options = {"decode_responses": True, "socket_connect_timeout": max(settings.redis_socket_timeout, 1.0)}
    reads = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
        settings.resolved_events_url, max_connections=32, timeout=5,
        socket_timeout=max(settings.redis_socket_timeout, 1.0), **redis_options))
    hub_redis = aioredis.Redis.from_url(settings.resolved_events_url, socket_timeout=BLOCK_MS / 1000 + 3,
                                        **redis_options)
    hub = Hub(hub_redis, max_backlog=max(1000, 2 * settings.events_max_length), block_ms=BLOCK_MS)
    app[CONTEXT] = StreamContext(
        settings=settings, db=Database(settings), tokens=TokenService(settings), stream_tokens=StreamTokens(settings),
        reader=EventReader(reads), hub=hub,
        slots=StreamSlots(per_user=settings.events_max_streams_per_user,
                          per_process=settings.events_max_streams_per_process,
                          retry_after_seconds=max(1, settings.events_retry_ms // 1000)))

    events_route = app.router.add_get(EVENTS_PATH, stream_events, allow_head=False)
    app.router.add_get("/healthz", _healthz, allow_head=False)
    app.router.add_get("/readyz", _readyz, allow_head=False)
    app.router.add_get("/metrics", _metrics, allow_head=False)
    cors = aiohttp_cors.setup(app, defaults={
        origin: aiohttp_cors.ResourceOptions(allow_credentials=False, allow_methods=["GET"],
                                             allow_headers=["Authorization", "Last-Event-ID", "Cache-Control"],
                                             expose_headers=["X-Request-ID", "Retry-After"],
                                             max_age=settings.cors_max_age_seconds)
        for origin in settings.allowed_origins})
    cors.add(events_route)

    async def start_hub(_app: web.Application) -> None:
        hub.start()

    async def end_streams(_app: web.Application) -> None:
        # Runs before the server waits for handlers: every stream ends now, cleanly.
        hub.close_all()

    async def release(_app: web.Application) -> None:
        await hub.stop()
        await hub_redis.aclose()
        await reads.aclose()
        app[CONTEXT].db.engine.dispose()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(release)
    app.on_response_prepare.append(_echo_request_id)
    return app


@web.middleware
async def _request_ids(request: web.Request, handler) -> web.StreamResponse:
    offered = request.headers.get("X-Request-ID", "")
    request["request_id"] = offered if _ACCEPTABLE_REQUEST_ID.match(offered) else uuid.uuid4().hex
    logcontext.request_id.set(request["request_id"])
    logcontext.user_id.set(None)
    return await handler(request)


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    if "request_id" in request:
        response.headers["X-Request-ID"] = request["request_id"]


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    if request.app[CONTEXT].hub.healthy.is_set():
        return web.json_response({"status": "ready", "checks": {"redis": "ok"}})
    return problem(503, "Service unavailable", "the event store (Redis) is unreachable", slug="not-ready",
                   checks={"redis": "unreachable"})


async def _metrics(request: web.Request) -> web.Response:
    settings = request.app[CONTEXT].settings
    refusal = scrape_refusal(settings, _client_address(request, settings.trusted_proxy_hops),
                             request.headers.get("Authorization", ""))
    if refusal is not None:
        return domain_problem(refusal)
    return metrics_text()


def _client_address(request: web.Request, hops: int) -> str | None:
    """The peer, or with trusted proxies in front the address they saw (as werkzeug's ProxyFix)."""
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.remote
