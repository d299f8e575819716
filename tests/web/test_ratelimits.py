"""Rate limits: per endpoint from settings, per user or per address, the IETF headers, proxies."""
from __future__ import annotations

import re

import pytest


@pytest.fixture
def settings_overrides():
    return {"ratelimit_default": "3 per minute", "trusted_proxy_hops": 1}


def login(client, forwarded_for: str | None = None, password: str = "Wrong-pass-1"):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/api/v2/auth/login", json={"email": "ada@example.com", "password": password},
                       headers=headers)


def test_sixth_login_is_a_429_problem_with_every_rate_limit_header(client):
    answers = [login(client, "10.0.0.1") for _ in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    limited = answers[-1]
    assert limited.content_type == "application/problem+json" and limited.get_json()["status"] == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Limit"] == "5" and limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["RateLimit-Policy"] == '"auth.login";q=5;w=60'
    assert re.fullmatch(r'"auth\.login";r=0;t=\d+', limited.headers["RateLimit"])


def test_a_successful_answer_carries_limit_headers_but_no_retry_after(client, auth_headers):
    response = client.get("/api/v2/auth/me", headers=auth_headers)
    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"] == '"default";q=3;w=60'
    assert re.fullmatch(r'"default";r=2;t=\d+', response.headers["RateLimit"])
    assert response.headers["X-RateLimit-Remaining"] == "2"
    assert "Retry-After" not in response.headers


def test_two_users_have_independent_limits(client, make_user):
    _, alice = make_user()
    _, bob = make_user()
    alice_answers = [client.get("/api/v2/projects", headers=alice).status_code for _ in range(4)]
    assert alice_answers == [200, 200, 200, 429]
    assert client.get("/api/v2/projects", headers=bob).status_code == 200


def test_a_forged_forwarded_for_beyond_the_trusted_hop_does_not_change_the_key(client):
    # One trusted proxy appends the real client address; anything before it was sent by the client.
    answers = [login(client, f"203.0.113.{i}, 10.0.0.7") for i in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    assert login(client, "203.0.113.99, 10.0.0.8").status_code == 401, "another real client is not limited"


def test_register_and_refresh_are_limited_too(client):
    statuses = [client.post("/api/v2/auth/refresh", json={"refresh_token": "x"}).status_code for _ in range(31)]
    assert statuses[-1] == 429 and statuses[:30] == [401] * 30
