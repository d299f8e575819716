"""Rate limits: one limit per endpoint, per user or per client address, from settings; each checked
with its headers in one Redis round trip, and in this process's memory while Redis is unreachable.

The limit arithmetic and its storage are the `limits` library's, the engine Flask-Limiter runs
on: the sliding-window counter, on Redis (web.ratelimit_storage) or in memory. Flask-Limiter
itself is not used: it works out on every request which of its decorators, blueprint limits,
exemptions, meta limits and defaults apply, which was measured at about 0.6 ms of CPU a request
here, more than the rest of a job poll (docs/PERFORMANCE.md). Here each endpoint's limit is
worked out once, when the app is built.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, g, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from limits.util import WindowStats

from shared.errors import DomainError
from shared.settings import Settings
from web.auth import client_address_key, rate_limit_key
from web.metrics import RATE_LIMITED
from web.ratelimit_storage import OneTripRedisStorage

logger = logging.getLogger(__name__)

# endpoint -> (settings field holding the limit, what the limit is keyed on); every other endpoint
# has RATELIMIT_DEFAULT, keyed by user (or client address when anonymous), each endpoint counted apart.
ROUTE_LIMITS: dict[str, tuple[str, Callable[[], str]]] = {
    "auth.login": ("ratelimit_login", client_address_key),
    "auth.register": ("ratelimit_register", client_address_key),
    "auth.refresh": ("ratelimit_refresh", client_address_key),
    "generation.generate_agentic": ("ratelimit_generate_agentic", rate_limit_key),
    "generation.generate_fullstack": ("ratelimit_generate_fullstack", rate_limit_key),
    "oauth.exchange": ("ratelimit_oauth_exchange", client_address_key),
}
# Stripe's deliveries are authenticated by signature, and a burst must not be refused; probes and
# API documents are never limited.
_UNLIMITED_BLUEPRINTS = frozenset({"openapi", "swagger", "redoc", "health", "webhooks"})
_UNLIMITED_ENDPOINTS = frozenset({"openapi_document", "metrics", "static"})
# Redis keys are the ones Flask-Limiter wrote ("LIMITER/devora/<key>/<endpoint>/<limit>"), so
# counts carry over.
KEY_PREFIX = "devora"
# After Redis fails, limits stay in memory this long before Redis is tried again.
RETRY_REDIS_SECONDS = 5.0


def is_rate_limited(endpoint: str) -> bool:
    """Whether requests to `endpoint` count against a limit (and so may be answered 429)."""
    blueprint = endpoint.rpartition(".")[0] or None
    return blueprint not in _UNLIMITED_BLUEPRINTS and endpoint not in _UNLIMITED_ENDPOINTS


class RateLimited(DomainError):
    status, title, type_slug = 429, "Too many requests", "rate-limited"


@dataclass(frozen=True)
class RouteLimit:
    item: RateLimitItem
    key: Callable[[], str]
    # The policy's name in the RateLimit headers.
    policy: str


@dataclass(frozen=True)
class Checked:
    """The limit a request was counted against and the window it left."""

    limit: RouteLimit
    window: WindowStats


class RateLimiter:
    """The app's limits, checked before each request and reported in its answer's headers."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.ratelimit_enabled
        self._default = parse(settings.ratelimit_default)
        self._settings = settings
        self._limits: dict[str, RouteLimit] = {}
        options = {"socket_timeout": settings.redis_socket_timeout,
                   "socket_connect_timeout": settings.redis_socket_timeout}
        self._storage: Storage = storage_from_string(_one_trip(settings.resolved_ratelimit_url), **options)
        self._shared = SlidingWindowCounterRateLimiter(self._storage)
        self._memory = MemoryStorage()
        self._local = SlidingWindowCounterRateLimiter(self._memory)
        # While set (a monotonic time), limits are counted in memory; Redis is tried again after it.
        self._in_memory_until: float | None = None

    def init_app(self, app: Flask) -> None:
        """Work out every endpoint's limit once; check it before each request, report it after."""
        for endpoint in app.view_functions:
            if not is_rate_limited(endpoint):
                continue
            if endpoint in ROUTE_LIMITS:
                setting, key = ROUTE_LIMITS[endpoint]
                self._limits[endpoint] = RouteLimit(parse(getattr(self._settings, setting)), key, endpoint)
            else:
                self._limits[endpoint] = RouteLimit(self._default, rate_limit_key, "default")
        if self.enabled:
            app.before_request(self._check)
            app.after_request(self._report)

    def reset(self) -> None:
        """Forget every count (tests start from empty limits)."""
        self._memory.reset()
        try:
            self._storage.reset()
        except Exception as error:  # noqa: BLE001 - an unreachable store has nothing to forget
            logger.warning("rate-limit storage not reset: %s", type(error).__name__)

    def _check(self) -> None:
        limit = self._limits.get(request.endpoint or "")
        if limit is None:
            return
        identifiers = (KEY_PREFIX, limit.key(), request.endpoint)
        taken, window = self._hit(limit.item, identifiers)
        g.rate_limit = Checked(limit, window)
        if not taken:
            RATE_LIMITED.labels(request.endpoint).inc()
            logger.info("rate limit %s (%s) exceeded at %s", limit.item, identifiers[1], request.endpoint)
            raise RateLimited(f"rate limit exceeded: {limit.item}")

    def _hit(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> tuple[bool, WindowStats]:
        if self._in_memory_until is None or time.monotonic() >= self._in_memory_until:
            try:
                # One round trip: the storage keeps the window its hit returned for the read.
                taken = self._shared.hit(item, *identifiers)
                window = self._shared.get_window_stats(item, *identifiers)
            except Exception as error:  # noqa: BLE001 - whatever broke the store, limits go on in memory
                if self._in_memory_until is None:
                    logger.warning("rate-limit storage unreachable (%s); limiting in memory for now",
                                   type(error).__name__)
                self._in_memory_until = time.monotonic() + RETRY_REDIS_SECONDS
            else:
                if self._in_memory_until is not None:
                    logger.warning("rate-limit storage reachable again; limits are shared again")
                    self._in_memory_until = None
                return taken, window
        return self._local.hit(item, *identifiers), self._local.get_window_stats(item, *identifiers)

    @staticmethod
    def _report(response: Response) -> Response:
        checked: Checked | None = g.get("rate_limit")
        if checked is None:
            return response
        item, window = checked.limit.item, checked.window
        remaining, reset_in = max(0, window.remaining), max(0, int(window.reset_time - time.time()))
        headers = response.headers
        headers["X-RateLimit-Limit"] = str(item.amount)
        headers["X-RateLimit-Remaining"] = str(remaining)
        headers["X-RateLimit-Reset"] = str(int(window.reset_time))
        # draft-ietf-httpapi-ratelimit-headers, structured-field form.
        headers["RateLimit-Policy"] = f'"{checked.limit.policy}";q={item.amount};w={item.get_expiry()}'
        headers["RateLimit"] = f'"{checked.limit.policy}";r={remaining};t={reset_in}'
        if response.status_code == 429:
            headers["Retry-After"] = str(max(1, reset_in))
        return response


def _one_trip(storage_uri: str) -> str:
    """A Redis storage URI as OneTripRedisStorage's scheme; any other storage is left as it is."""
    scheme = storage_uri.split("://", 1)[0]
    return f"devora+{storage_uri}" if f"devora+{scheme}" in OneTripRedisStorage.STORAGE_SCHEME else storage_uri


def init_limiter(app: Flask, settings: Settings) -> RateLimiter:
    """Bind the app's limits (from settings) to it; call after every blueprint is registered."""
    limiter = RateLimiter(settings)
    limiter.init_app(app)
    return limiter
