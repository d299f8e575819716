"""Per-process resources of a worker: settings and the database, safe across fork."""
from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init
from redis import Redis

from shared.db import Database
from shared.events import EventStore
from shared.integrations.stripe_gateway import StripeGateway
from shared.settings import Settings

_databases: dict[int, Database] = {}
_gateways: dict[int, StripeGateway] = {}
_brokers: dict[int, Redis | None] = {}
_event_stores: dict[int, EventStore] = {}


def settings_of(app: Celery) -> Settings:
    return app.conf.devora_settings


def database_of(app: Celery) -> Database:
    """The app's database, created on first use in this process."""
    db = _databases.get(id(app))
    if db is None:
        db = _databases[id(app)] = Database(settings_of(app))
    return db


def gateway_of(app: Celery) -> StripeGateway:
    """The app's Stripe client (it holds no connection until used)."""
    gateway = _gateways.get(id(app))
    if gateway is None:
        gateway = _gateways[id(app)] = StripeGateway(settings_of(app))
    return gateway


def events_of(app: Celery) -> EventStore:
    """Where the app's job events are published (no connection until the first one)."""
    store = _event_stores.get(id(app))
    if store is None:
        store = _event_stores[id(app)] = EventStore.from_settings(settings_of(app))
    return store


def broker_redis_of(app: Celery) -> Redis | None:
    """A plain client of the broker's Redis (None when the broker is not Redis, e.g. RabbitMQ)."""
    if id(app) not in _brokers:
        settings = settings_of(app)
        url = settings.resolved_broker_url
        _brokers[id(app)] = (Redis.from_url(url, socket_timeout=settings.redis_socket_timeout,
                                            socket_connect_timeout=settings.redis_socket_timeout)
                             if url.startswith(("redis://", "rediss://", "unix://")) else None)
    return _brokers[id(app)]


@worker_process_init.connect
def _forget_inherited_connections(**_kwargs) -> None:
    # A pool child must not reuse connections opened by its parent before the fork.
    for db in _databases.values():
        db.dispose_after_fork()
