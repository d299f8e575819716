"""What the app shares across requests: settings, database, token service."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from authlib.integrations.flask_client import OAuth
from celery import Celery

from flask import current_app, g
from redis import Redis
from sqlalchemy.orm import Session

from shared.db import Database
from shared.events import EventStore
from shared.integrations.stripe_gateway import StripeGateway
from shared.projects import Limits
from shared.quick_reads import QuickReads
from shared.security import TokenService
from shared.settings import Settings
from shared.stream_tokens import StreamTokens

if TYPE_CHECKING:  # web.ratelimits imports this module, through web.auth
    from web.ratelimits import RateLimiter


@dataclass
class AppState:
    settings: Settings
    db: Database
    tokens: TokenService
    limits: Limits
    producer: Celery
    gateway: StripeGateway
    # The app's own Redis (webhook dedup markers, beat's heartbeat, the readiness ping);
    # lazy, no connection until used.
    redis: Redis
    stream_tokens: StreamTokens
    # Where job events are published for the owners' live streams.
    events: EventStore
    # The account and job reads of the hot paths, without the ORM.
    reads: QuickReads
    oauth: OAuth | None = None
    limiter: RateLimiter | None = None


def state() -> AppState:
    return current_app.extensions["devora"]


def db_session() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = state().db.sessions()
    return g.db_session


def close_db_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
