"""The Flask application factory: `gunicorn 'web:create_app()'` or `flask --app web`."""
from __future__ import annotations

from flask_openapi3 import Info
from werkzeug.middleware.proxy_fix import ProxyFix

from redis import Redis

from shared.db import Database
from shared.events import EventStore
from shared.integrations.stripe_gateway import StripeGateway
from shared.logging_setup import configure_logging
from shared.projects import Limits
from shared.quick_reads import QuickReads
from shared.schemas.common import ValidationProblem
from shared.security import TokenService
from shared.settings import Settings, load_settings
from shared.stream_tokens import StreamTokens
from shared.taskqueue import make_producer
from web.api_document import DevoraOpenAPI
from web.blueprints import BLUEPRINTS
from web.auth import init_authentication
from web.caching import JSONCacheSerializer
from web.converters import FilePathConverter, IdConverter
from web.cookie_session import CookieSessionInterface
from web.cors import init_cors
from web.extensions import cache
from web.json_bodies import require_json_bodies
from web.metrics import init_metrics
from web.oauth_clients import init_oauth
from web.openapi import SECURITY_SCHEMES
from web.problems import register_error_handlers, validation_problem
from web.ratelimits import init_limiter
from web.request_encoding import init_url_checks
from web.request_ids import init_request_ids
from web.state import AppState, close_db_session

API_VERSION = "2.0.0"


def create_app(settings: Settings | None = None) -> DevoraOpenAPI:
    """Build the app from `settings` (read from the environment when omitted)."""
    settings = settings or load_settings()
    configure_logging(settings)
    app = DevoraOpenAPI(
        __name__,
        info=Info(title="Devora API", version=API_VERSION,
                  description="Projects, code generation jobs, billing and webhooks."),
        security_schemes=SECURITY_SCHEMES,
        validation_error_model=ValidationProblem,
        validation_error_callback=validation_problem,
        doc_prefix="/api/v2/docs",
        doc_url="/openapi.json",
    )
    app.config.update(_flask_config(settings))
    app.session_interface = CookieSessionInterface()
    app.url_map.converters["filepath"] = FilePathConverter
    app.url_map.converters["uuid"] = IdConverter
    # A doubled slash in a file path is an error to report, not a URL to redirect.
    app.url_map.merge_slashes = False
    if settings.trusted_proxy_hops:
        # Only the configured number of proxies is believed; an X-Forwarded-For entry
        # added by the client itself beyond them is ignored.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops,
                                x_proto=settings.trusted_proxy_hops, x_host=0)

    database = Database(settings)
    app.extensions["devora"] = AppState(
        settings=settings, db=database, tokens=TokenService(settings), limits=Limits.from_settings(settings),
        producer=make_producer(settings), gateway=StripeGateway(settings),
        redis=Redis.from_url(settings.resolved_state_url, socket_timeout=settings.redis_socket_timeout,
                             socket_connect_timeout=settings.redis_socket_timeout),
        stream_tokens=StreamTokens(settings), events=EventStore.from_settings(settings),
        reads=QuickReads(database.engine))
    cache.init_app(app)
    init_request_ids(app)
    init_url_checks(app)
    init_metrics(app)
    # Preflights are answered here, before the limiter and the blueprints see them.
    init_cors(app, settings)
    register_error_handlers(app)
    for blueprint in BLUEPRINTS:
        app.register_api(blueprint)
    app.add_url_rule("/api/v2/openapi.json", "openapi_document", lambda: app.api_doc)
    app.extensions["devora"].limiter = init_limiter(app, settings)
    # After the limiter's hook: an anonymous flood is limited before it is told 401.
    init_authentication(app)
    require_json_bodies(app)
    app.extensions["devora"].oauth = init_oauth(app, settings, app.extensions["devora"].db)
    app.teardown_appcontext(close_db_session)
    return app


def _flask_config(settings: Settings) -> dict:
    redis_options = {"socket_timeout": settings.redis_socket_timeout,
                     "socket_connect_timeout": settings.redis_socket_timeout}
    return {
        "SECRET_KEY": settings.secret_key.get_secret_value(),
        # The session cookie only carries the OAuth flow's state marker between the
        # redirect to a provider and its callback, so Lax (not Strict) is required.
        "SESSION_COOKIE_NAME": "devora_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": settings.devora_env == "production",
        "MAX_CONTENT_LENGTH": settings.max_request_bytes,
        "JSON_SORT_KEYS": False,
        "CACHE_TYPE": "RedisCache",
        "CACHE_REDIS_URL": settings.resolved_cache_url,
        "CACHE_KEY_PREFIX": "devora:cache:",
        "CACHE_OPTIONS": redis_options,
        "CACHE_SERIALIZER": JSONCacheSerializer,
        "CACHE_DEFAULT_TIMEOUT": settings.cache_default_timeout,
    }
