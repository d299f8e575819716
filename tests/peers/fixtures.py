"""Fixtures for code that talks to Stripe: a localstripe process, an HTTP stub and settings for either."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.settings import Settings
from tests.peers.localstripe_peer import LocalStripe, start_localstripe
from tests.peers.stripe_events import API_KEY, WEBHOOK_SECRET
from tests.peers.stripe_stub import StripeStub


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    """One localstripe for the run, on loopback with private state; `.url`, `.register_webhook`, `.reset`."""
    with start_localstripe() as peer:
        yield peer


@pytest.fixture
def stripe_stub() -> Iterator[StripeStub]:
    """A fresh Stripe stub per test: its recorded requests and fault queues start empty."""
    with StripeStub() as stub:
        yield stub


@pytest.fixture
def stripe_settings() -> Callable[..., Settings]:
    """Build settings aimed at a Stripe peer: `stripe_settings(url, stripe_max_network_retries=0)`."""

    def build(api_base: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            _env_file=None, stripe_api_key=API_KEY,
            stripe_webhook_secret=WEBHOOK_SECRET, stripe_api_base=api_base,
            stripe_timeout_seconds=5, stripe_max_network_retries=2,
            # The gateway needs neither; explicit values keep the environment out of the test.
            database_url="sqlite://", redis_url="redis://127.0.0.1:1/0",
        )
        values.update(overrides)
        return Settings(**values)

    return build
