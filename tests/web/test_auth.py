"""Registration, login, tokens and their rotation, through the HTTP API."""
from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from tests.conftest import STRONG_PASSWORD

PROBLEM = "application/problem+json"


@pytest.fixture
def settings_overrides() -> dict:
    # No grace: a second use of a rotated refresh token is reuse at once (the grace has its own tests).
    return {"refresh_reuse_grace_seconds": 0}


def register(client, email="ada@example.com", password=STRONG_PASSWORD, **extra):
    return client.post("/api/v2/auth/register", json={"email": email, "password": password, **extra})


@pytest.mark.parametrize(("password", "rule"), [
    ("Sh0rt", "at least 8 characters"),
    ("alllowercase1", "uppercase letter"),
    ("ALLUPPERCASE1", "lowercase letter"),
    ("NoDigitsHere", "digit"),
])
def test_weak_password_is_refused_naming_the_rule(client, password, rule):
    response = register(client, password=password)
    assert response.status_code == 422
    assert response.content_type == PROBLEM
    body = response.get_json()
    assert body["errors"][0]["loc"] == ["password"]
    assert rule in body["errors"][0]["msg"]
    assert rule in body["detail"]


def test_invalid_email_is_a_422_naming_the_field(client):
    response = register(client, email="not-an-email")
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["loc"] == ["email"]


def test_register_returns_a_token_pair_and_me_works(client):
    response = register(client, full_name="Ada Lovelace")
    assert response.status_code == 201
    tokens = response.get_json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    me = client.get("/api/v2/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.get_json()["email"] == "ada@example.com"
    assert me.get_json()["full_name"] == "Ada Lovelace"
    assert "password" not in str(me.get_json())


def test_duplicate_email_is_409_case_insensitively(client):
    assert register(client).status_code == 201
    response = register(client, email="ADA@example.com")
    assert response.status_code == 409
    assert response.content_type == PROBLEM
    assert "already exists" in response.get_json()["detail"]


def test_login_with_right_and_wrong_password(client):
    register(client)
    ok = client.post("/api/v2/auth/login", json={"email": "ada@example.com", "password": STRONG_PASSWORD})
    assert ok.status_code == 200 and ok.get_json()["access_token"]
    bad = client.post("/api/v2/auth/login", json={"email": "ada@example.com", "password": "Wrong-pass-1"})
    unknown = client.post("/api/v2/auth/login", json={"email": "nobody@example.com", "password": "Wrong-pass-1"})
    assert bad.status_code == unknown.status_code == 401
    assert bad.get_json()["detail"] == unknown.get_json()["detail"] == "invalid email or password"


def test_sixth_login_in_a_minute_from_one_address_is_429(client):
    register(client)
    statuses = [client.post("/api/v2/auth/login", json={"email": "ada@example.com", "password": "Wrong-pass-1"})
                for _ in range(6)]
    assert [r.status_code for r in statuses[:5]] == [401] * 5
    limited = statuses[5]
    assert limited.status_code == 429
    assert limited.content_type == PROBLEM
    assert limited.get_json()["status"] == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Limit"] == "5"
    # Even the right password is refused until the window passes.
    right = client.post("/api/v2/auth/login", json={"email": "ada@example.com", "password": STRONG_PASSWORD})
    assert right.status_code == 429


def test_me_without_or_with_a_bad_token_is_401(client, app):
    assert client.get("/api/v2/auth/me").status_code == 401
    garbage = client.get("/api/v2/auth/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert garbage.status_code == 401
    assert garbage.headers["WWW-Authenticate"].startswith("Bearer")
    assert garbage.content_type == PROBLEM


def _forge(app, **claims) -> str:
    settings = app.extensions["devora"].settings
    import hashlib
    key = OctKey.import_key(hashlib.sha256(b"jwt:" + settings.secret_key.get_secret_value().encode()).digest())
    now = int(time.time())
    base = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience, "sub": "00000000-0000-0000-0000-000000000001",
            "iat": now, "exp": now + 60}
    base.update(claims)
    return jwt.encode({"alg": "HS256"}, base, key)


@pytest.mark.parametrize("claims", [
    {"exp": int(time.time()) - 10},
    {"iss": "someone-else"},
    {"aud": "another-api"},
])
def test_expired_or_foreign_tokens_are_refused(client, app, make_user, claims):
    user, _ = make_user()
    token = _forge(app, sub=str(user.id), **claims)
    assert client.get("/api/v2/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    good = _forge(app, sub=str(user.id))
    assert client.get("/api/v2/auth/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200


def test_refresh_rotates_and_reuse_revokes_the_family(client):
    first = register(client).get_json()
    second = client.post("/api/v2/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"]

    replay = client.post("/api/v2/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert "already used" in replay.get_json()["detail"]
    # The legitimate newer token of the same family is revoked too.
    after = client.post("/api/v2/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401


def test_other_logins_survive_a_revoked_family(client):
    first = register(client).get_json()
    other = client.post("/api/v2/auth/login", json={"email": "ada@example.com", "password": STRONG_PASSWORD}).get_json()
    client.post("/api/v2/auth/refresh", json={"refresh_token": first["refresh_token"]})
    client.post("/api/v2/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert client.post("/api/v2/auth/refresh", json={"refresh_token": other["refresh_token"]}).status_code == 200


def test_logout_revokes_the_refresh_token(client):
    tokens = register(client).get_json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.post("/api/v2/auth/logout", json={"refresh_token": tokens["refresh_token"]},
                       headers=headers).status_code == 204
    assert client.post("/api/v2/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_unknown_refresh_token_is_401(client):
    assert client.post("/api/v2/auth/refresh", json={"refresh_token": "nope"}).status_code == 401


def test_password_is_stored_as_argon2id(client, db):
    from sqlalchemy import select

    from shared.models import User

    register(client)
    with db.transaction() as session:
        stored = session.scalar(select(User.password_hash))
    assert stored.startswith("$argon2id$")
    assert STRONG_PASSWORD not in stored
