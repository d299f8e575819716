"""Logging out logs out: access tokens of a revoked login or a deactivated account stop working at once,
and two tabs refreshing with one token together are not mistaken for a thief."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update

from shared.models import User
from tests.conftest import STRONG_PASSWORD

GRACE = 1.5


@pytest.fixture
def settings_overrides() -> dict:
    return {"refresh_reuse_grace_seconds": GRACE}


def login(client, email="grace@example.com") -> dict:
    if client.post("/api/v2/auth/register", json={"email": email, "password": STRONG_PASSWORD}).status_code != 201:
        raise AssertionError("registration failed")
    return client.post("/api/v2/auth/login", json={"email": email, "password": STRONG_PASSWORD}).get_json()


def me(client, tokens) -> int:
    return client.get("/api/v2/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code


def refresh(client, token):
    return client.post("/api/v2/auth/refresh", json={"refresh_token": token})


def test_logout_stops_the_logins_access_tokens_at_once_and_no_other(client):
    tokens = login(client)
    other = client.post("/api/v2/auth/login", json={"email": "grace@example.com", "password": STRONG_PASSWORD}
                        ).get_json()
    rotated = refresh(client, tokens["refresh_token"]).get_json()
    assert me(client, tokens) == me(client, rotated) == 200
    assert client.post("/api/v2/auth/logout", json={"refresh_token": rotated["refresh_token"]},
                       headers={"Authorization": f"Bearer {rotated['access_token']}"}).status_code == 204
    assert me(client, rotated) == 401 and me(client, tokens) == 401, "every access token of that login"
    response = client.get("/api/v2/projects", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 401 and "logged out" in response.get_json()["detail"]
    assert me(client, other) == 200, "the other login goes on"


def test_refresh_token_reuse_after_the_grace_stops_the_logins_access_tokens(client):
    tokens = login(client)
    rotated = refresh(client, tokens["refresh_token"]).get_json()
    time.sleep(GRACE + 0.5)
    reused = refresh(client, tokens["refresh_token"])
    assert reused.status_code == 401 and "already used" in reused.get_json()["detail"]
    assert me(client, rotated) == 401 and refresh(client, rotated["refresh_token"]).status_code == 401


def test_a_deactivated_accounts_token_stops_at_once(client, db):
    tokens = login(client)
    with db.transaction() as session:
        session.execute(update(User).where(User.email == "grace@example.com").values(is_active=False))
    assert me(client, tokens) == 401
    assert client.get("/api/v2/jobs", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401


def test_concurrent_refreshes_with_one_token_all_get_the_same_new_pair(app):
    tokens = login(app.test_client())

    def one(_):
        return refresh(app.test_client(), tokens["refresh_token"])

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(one, range(5)))
    assert [answer.status_code for answer in answers] == [200] * 5, [a.get_json() for a in answers]
    successors = {answer.get_json()["refresh_token"] for answer in answers}
    assert len(successors) == 1, "every tab holds the same, valid refresh token"
    assert all(me(app.test_client(), answer.get_json()) == 200 for answer in answers)
    assert refresh(app.test_client(), successors.pop()).status_code == 200, "and the login goes on"
