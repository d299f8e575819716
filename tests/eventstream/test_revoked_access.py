"""A deactivated account or a logged-out login reads no more events: refused when a stream opens, and an
open stream ends within a heartbeat. Real logins through the API, the real stream process over HTTP."""
from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import update

from shared.models import User
from tests.conftest import STRONG_PASSWORD
from tests.events_helpers import EventStream, new_job

HEARTBEAT = 0.3


@pytest.fixture
def settings_overrides():
    return {"events_heartbeat_seconds": HEARTBEAT}


def login(client, email: str) -> dict:
    """A login through the API: its access and refresh tokens, and a stream token the API issued for it."""
    client.post("/api/v2/auth/register", json={"email": email, "password": STRONG_PASSWORD})
    tokens = client.post("/api/v2/auth/login", json={"email": email, "password": STRONG_PASSWORD}).get_json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    issued = client.post("/api/v2/events/token", headers=bearer)
    assert issued.status_code == 201, issued.get_json()
    return {**tokens, "bearer": bearer, "stream_token": issued.get_json()["token"]}


def logout(client, session: dict) -> None:
    response = client.post("/api/v2/auth/logout", json={"refresh_token": session["refresh_token"]},
                           headers=session["bearer"])
    assert response.status_code == 204


def deactivate(db, email: str) -> None:
    with db.transaction() as session:
        session.execute(update(User).where(User.email == email).values(is_active=False))


def refused(stream, **credential) -> str:
    """The detail of the 401 a stream opening with `credential` gets."""
    attempt = EventStream(stream.events_url, **credential)
    assert attempt.response.status_code == 401, attempt.response.text
    assert attempt.response.headers["Content-Type"] == "application/problem+json"
    assert attempt.response.headers["WWW-Authenticate"].startswith("Bearer")
    return attempt.response.json()["detail"]


def opens(stream, **credential) -> bool:
    with EventStream(stream.events_url, **credential) as attempt:
        return attempt.ok


def test_a_deactivated_account_is_refused_with_either_credential(stream, client, db, stream_token):
    session = login(client, "gone@example.com")
    user_id = uuid.UUID(client.get("/api/v2/auth/me", headers=session["bearer"]).get_json()["id"])
    # Any stream token: one the API issued for the login, one an operator tool made for the user.
    credentials = [{"headers": session["bearer"]}, {"token": session["stream_token"]},
                   {"token": stream_token(user_id)}]
    assert all(opens(stream, **credential) for credential in credentials)
    deactivate(db, "gone@example.com")
    assert client.get("/api/v2/auth/me", headers=session["bearer"]).status_code == 401
    for credential in credentials:
        assert "no longer exists" in refused(stream, **credential)


def test_a_logged_out_login_is_refused_and_the_users_other_login_is_not(stream, client):
    session = login(client, "left@example.com")
    other = client.post("/api/v2/auth/login", json={"email": "left@example.com", "password": STRONG_PASSWORD}
                        ).get_json()
    other_token = client.post("/api/v2/events/token",
                              headers={"Authorization": f"Bearer {other['access_token']}"}).get_json()["token"]
    logout(client, session)
    assert "logged out" in refused(stream, headers=session["bearer"])
    # Issued before the logout, still unexpired, and refused: it names the login.
    assert "logged out" in refused(stream, token=session["stream_token"])
    assert opens(stream, headers={"Authorization": f"Bearer {other['access_token']}"})
    assert opens(stream, token=other_token)


def ends_within(open_stream: EventStream, seconds: float) -> float:
    """How long the server took to end the stream cleanly (it must, within `seconds`)."""
    started = time.monotonic()
    open_stream.read_to_end()
    took = time.monotonic() - started
    assert took < seconds, f"the stream stayed open {took:.1f} s"
    return took


def test_open_streams_of_a_logged_out_login_end_within_seconds_and_stay_refused(stream, client, db):
    session = login(client, "out@example.com")
    other = client.post("/api/v2/auth/login", json={"email": "out@example.com", "password": STRONG_PASSWORD}
                        ).get_json()
    user_id = uuid.UUID(client.get("/api/v2/auth/me", headers=session["bearer"]).get_json()["id"])
    job = new_job(db, user_id)
    by_token = EventStream(stream.events_url, token=session["stream_token"], read_timeout=30)
    by_bearer = EventStream(stream.events_url, headers=session["bearer"], read_timeout=30)
    kept = EventStream(stream.events_url, headers={"Authorization": f"Bearer {other['access_token']}"},
                       read_timeout=30)
    try:
        for open_stream in (by_token, by_bearer, kept):
            assert open_stream.ok and open_stream.next_event().job_id == str(job)
        logout(client, session)
        ends_within(by_token, 5.0)
        ends_within(by_bearer, 5.0)
        # The browser's automatic reconnect is refused, so EventSource stops.
        assert "logged out" in refused(stream, token=session["stream_token"])
        # The user's other login reads on: heartbeats keep coming past several checks.
        pings = kept.parser.comments
        while kept.parser.comments < pings + 3:
            assert kept.next_line() is not None, "the other login's stream ended"
    finally:
        for open_stream in (by_token, by_bearer, kept):
            open_stream.close()
    assert "(access revoked)" in stream.log()


def test_an_open_stream_of_a_deactivated_account_ends_within_seconds(stream, client, db):
    session = login(client, "off@example.com")
    with EventStream(stream.events_url, token=session["stream_token"], read_timeout=30) as open_stream:
        assert open_stream.ok
        assert open_stream.next_line() is not None
        deactivate(db, "off@example.com")
        ends_within(open_stream, 5.0)
    assert "no longer exists" in refused(stream, headers=session["bearer"])
