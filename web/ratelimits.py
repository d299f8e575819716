"""Rate limits: one Limiter per app, with per-endpoint limits taken from settings."""
from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter

from shared.settings import Settings
from web.auth import client_address_key, rate_limit_key
from web.ratelimit_storage import OneTripRedisStorage

# endpoint -> (settings field holding the limit, what the limit is keyed on)
ROUTE_LIMITS: dict[str, tuple[str, Callable[[], str]]] = {
    "auth.login": ("ratelimit_login", client_address_key),
    "auth.register": ("ratelimit_register", client_address_key),
    "auth.refresh": ("ratelimit_refresh", client_address_key),
    "generation.generate_agentic": ("ratelimit_generate_agentic", rate_limit_key),
    "generation.generate_fullstack": ("ratelimit_generate_fullstack", rate_limit_key),
    "oauth.exchange": ("ratelimit_oauth_exchange", client_address_key),
}
# Stripe's deliveries are authenticated by signature, and a burst must not be refused.
_UNLIMITED_BLUEPRINTS = frozenset({"openapi", "swagger", "redoc", "health", "webhooks"})
_UNLIMITED_ENDPOINTS = frozenset({"openapi_document", "metrics"})


def is_rate_limited(endpoint: str) -> bool:
    """Whether requests to `endpoint` count against a limit (and so may be answered 429)."""
    blueprint = endpoint.rpartition(".")[0] or None
    return blueprint not in _UNLIMITED_BLUEPRINTS and endpoint not in _UNLIMITED_ENDPOINTS


def _unlimited() -> bool:
    """Probes and API documents are never rate limited."""
    return request.blueprint in _UNLIMITED_BLUEPRINTS or request.endpoint in _UNLIMITED_ENDPOINTS


def _stash_retry_after(response: Response) -> Response:
    g.own_retry_after = response.headers.get("Retry-After")
    return response


def _finish_headers(response: Response) -> Response:
    # Flask-Limiter stamps every response with Retry-After (its window reset), even
    # successes, overriding a view's own hint; only a 429 should carry the limiter's.
    if response.status_code != 429:
        if g.get("own_retry_after"):
            response.headers["Retry-After"] = g.own_retry_after
        else:
            response.headers.pop("Retry-After", None)
    _ietf_headers(response)
    return response


def _ietf_headers(response: Response) -> None:
    """RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers) beside X-RateLimit-*."""
    limiter: Limiter | None = current_app.extensions["devora"].limiter
    current = limiter.current_limit if limiter is not None and limiter.enabled else None
    if current is None:
        return
    # The limiter's own header hook already read the window; these reads are cached.
    item = current.limit
    policy = request.endpoint if request.endpoint in ROUTE_LIMITS else "default"
    reset = max(0, int(current.reset_at - time.time()))
    response.headers["RateLimit-Policy"] = f'"{policy}";q={item.amount};w={item.get_expiry()}'
    response.headers["RateLimit"] = f'"{policy}";r={max(0, current.remaining)};t={reset}'


def _one_trip(storage_uri: str) -> str:
    """A Redis storage URI as OneTripRedisStorage's scheme; any other storage is left as it is."""
    scheme = storage_uri.split("://", 1)[0]
    return f"devora+{storage_uri}" if f"devora+{scheme}" in OneTripRedisStorage.STORAGE_SCHEME else storage_uri


def init_limiter(app: Flask, settings: Settings) -> Limiter:
    """Bind a Limiter to `app` on the rate-limit Redis, failing open to memory if it is down."""
    limiter = Limiter(
        rate_limit_key,
        app=None,
        default_limits=[settings.ratelimit_default],
        default_limits_exempt_when=_unlimited,
        storage_uri=_one_trip(settings.resolved_ratelimit_url),
        storage_options={"socket_timeout": settings.redis_socket_timeout,
                         "socket_connect_timeout": settings.redis_socket_timeout},
        strategy="sliding-window-counter",
        headers_enabled=True,
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        key_prefix="devora",
        enabled=settings.ratelimit_enabled,
    )
    # Flask runs after-request hooks in reverse order of registration: the stash runs
    # before the limiter's hook and the restore after it.
    app.after_request(_finish_headers)
    limiter.init_app(app)
    app.after_request(_stash_retry_after)
    # Wrapping the registered views (rather than decorating at import) keeps each
    # app's limiter, its storage and its health state separate.
    for endpoint, (setting, key_func) in ROUTE_LIMITS.items():
        app.view_functions[endpoint] = limiter.limit(getattr(settings, setting), key_func=key_func)(
            app.view_functions[endpoint])
    return limiter
