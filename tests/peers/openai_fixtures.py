"""Fixtures for code that talks to a language model: a scripted OpenAI-compatible peer and settings for it."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.settings import Settings
from tests.peers.openai_peer import OpenAIPeer

LLM_TEST_KEY = "sk-test-devora-0123456789abcdef"
PEER_MODEL = "peer-model"


@pytest.fixture
def openai_peer() -> Iterator[OpenAIPeer]:
    """A fresh peer per test, requiring LLM_TEST_KEY: its script and recorded requests start empty."""
    with OpenAIPeer(models=(PEER_MODEL,), api_key=LLM_TEST_KEY) as peer:
        yield peer


@pytest.fixture
def llm_settings(openai_peer: OpenAIPeer) -> Callable[..., Settings]:
    """Build settings aimed at the peer: `llm_settings(llm_timeout_seconds=1)`."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            _env_file=None, generation_provider="llm", llm_base_url=openai_peer.base_url, llm_model=PEER_MODEL,
            llm_api_key=LLM_TEST_KEY, llm_timeout_seconds=30, llm_progress_interval_seconds=0.05,
            # The client needs neither; explicit values keep the environment out of the test.
            database_url="sqlite://", redis_url="redis://127.0.0.1:1/0",
        )
        values.update(overrides)
        return Settings(**values)

    return build
