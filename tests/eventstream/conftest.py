"""The real stream process on a free loopback port, the event store, and credentials for it."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.events import EventStore
from tests.events_helpers import StreamProcess


@pytest.fixture
def stream(app, settings, tmp_path) -> Iterator[StreamProcess]:
    """`python -m eventstream` with the test's settings; `app` first, so the schema is clean."""
    server = StreamProcess(settings, tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def events(settings) -> Iterator[EventStore]:
    """The publisher the workers use, on the test's Redis."""
    store = EventStore.from_settings(settings)
    yield store
    store.redis.close()


@pytest.fixture
def stream_token(app):
    """`stream_token(user_id)`: a stream token as POST /api/v2/events/token issues it."""
    tokens = app.extensions["devora"].stream_tokens
    return lambda user_id: tokens.issue(user_id)[0]
