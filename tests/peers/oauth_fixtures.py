"""Fixtures for code that signs people in through OAuth: a loopback OIDC + GitHub-like provider."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.oauth_provider import OAuthProvider


@pytest.fixture
def oauth_provider() -> Iterator[OAuthProvider]:
    """A fresh provider per test: its clients, users, codes, tokens and recorded requests start anew."""
    with OAuthProvider() as provider:
        yield provider
