"""Per-process resources of a worker: settings and the database, safe across fork."""
from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from shared.db import Database
from shared.integrations.stripe_gateway import StripeGateway
from shared.settings import Settings

_databases: dict[int, Database] = {}
_gateways: dict[int, StripeGateway] = {}


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


@worker_process_init.connect
def _forget_inherited_connections(**_kwargs) -> None:
    # A pool child must not reuse connections opened by its parent before the fork.
    for db in _databases.values():
        db.dispose_after_fork()
