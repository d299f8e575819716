"""CORS for browser frontends on other origins (Flask-Cors), with preflights answered up front.

The API authenticates with bearer tokens in the Authorization header, never with
cookies, so no credentials are allowed: a page on another origin can only act with a
token it holds itself. (The one cookie, the OAuth state marker, only travels on
top-level redirects to and from a provider, which CORS does not govern.)
"""
from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask_cors import CORS

from shared.settings import Settings

# What a frontend sends: JSON bodies, bearer tokens, idempotent submissions,
# conditional polls, resumed event streams and its own request ids.
ALLOWED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match", "Last-Event-ID",
                   "X-Request-ID"]
# What a frontend must read beyond the CORS-safelisted response headers.
EXPOSED_HEADERS = ["Location", "ETag", "Retry-After", "RateLimit", "RateLimit-Policy", "X-RateLimit-Limit",
                   "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-Request-ID", "Idempotent-Replayed",
                   "Content-Disposition"]
API_PATHS = r"/api/*"


def is_preflight() -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def _answer_preflight() -> Response | None:
    # Registered before the rate limiter and before any blueprint's authentication, so a
    # preflight (which a browser sends without credentials) is neither refused nor
    # counted; Flask-Cors's after-request hook then adds the headers, or none for an
    # origin that is not allowed.
    if is_preflight() and request.path.startswith("/api/"):
        return current_app.make_default_options_response()
    return None


def _vary_on_origin(response: Response) -> Response:
    # Whether CORS headers are present depends on Origin even with a single allowed
    # origin (Flask-Cors only says so for several), so caches must key on it.
    if request.path.startswith("/api/"):
        response.vary.add("Origin")
    return response


def init_cors(app: Flask, settings: Settings) -> None:
    """Allow the configured origins; call before the limiter and the blueprints are bound."""
    app.before_request(_answer_preflight)
    CORS(app, resources={API_PATHS: {}}, origins=settings.allowed_origins, methods=ALLOWED_METHODS,
         allow_headers=ALLOWED_HEADERS, expose_headers=EXPOSED_HEADERS, max_age=settings.cors_max_age_seconds,
         supports_credentials=False, always_send=False, vary_header=True)
    app.after_request(_vary_on_origin)
