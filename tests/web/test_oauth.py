"""OAuth login end to end: the app's Authlib client against a local Authlib provider over loopback HTTP."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import update

from shared.models import OAuthTicket
from shared.models.base import utcnow
from tests.conftest import STRONG_PASSWORD

FRONTEND = "http://frontend.test"


@pytest.fixture
def settings_overrides(oauth_provider):
    return {
        "frontend_url": FRONTEND,
        "oauth_google_client_id": "google-client", "oauth_google_client_secret": "google-secret",
        "oauth_google_metadata_url": oauth_provider.google_metadata_url,
        "oauth_github_client_id": "github-client", "oauth_github_client_secret": "github-secret",
        "oauth_github_authorize_url": oauth_provider.github_authorize_url,
        "oauth_github_token_url": oauth_provider.github_token_url,
        "oauth_github_api_base_url": oauth_provider.github_api_base_url,
    }


def start(client, provider: str) -> str:
    """The app's redirect to the provider, then the provider's redirect back: the callback URL."""
    to_provider = client.get(f"/api/v2/auth/oauth/{provider}/authorize")
    assert to_provider.status_code == 302, to_provider.get_data(as_text=True)
    back = requests.get(to_provider.headers["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    parts = urlsplit(back.headers["Location"])
    return f"{parts.path}?{parts.query}"


def finish(client, callback: str):
    return client.get(callback)


def frontend_params(response) -> dict[str, str]:
    assert response.status_code == 302, response.get_data(as_text=True)
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{FRONTEND}/auth/callback"
    return {key: values[0] for key, values in parse_qs(location.query).items()}


def login_with(client, provider: str) -> dict:
    params = frontend_params(finish(client, start(client, provider)))
    assert "access_token" not in params and "refresh_token" not in params, "tokens never travel in a URL"
    tokens = client.post("/api/v2/auth/oauth/exchange", json={"code": params["code"]})
    assert tokens.status_code == 200, tokens.get_json()
    return tokens.get_json()


def me(client, tokens) -> dict:
    return client.get("/api/v2/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).get_json()


def test_providers_lists_the_configured_ones(client):
    names = [p["name"] for p in client.get("/api/v2/auth/providers").get_json()["items"]]
    assert names == ["google", "github"]


def test_first_login_creates_the_account_and_the_second_logs_into_it(client, oauth_provider):
    oauth_provider.set_user(sub="g-1", email="Grace@Example.com", email_verified=True, name="Grace Hopper")
    first = me(client, login_with(client, "google"))
    assert first["email"] == "grace@example.com" and first["full_name"] == "Grace Hopper"
    second = me(client, login_with(client, "google"))
    assert second["id"] == first["id"]


def test_the_provider_sees_and_checks_the_pkce_verifier(client, oauth_provider):
    login_with(client, "google")
    login_with(client, "github")
    exchanges = [r for r in oauth_provider.token_requests if r["grant_type"] == "authorization_code"]
    assert len(exchanges) == 2
    assert all(r["code_verifier_present"] and r["pkce_verified"] and r["error"] is None for r in exchanges)


def test_a_verified_email_links_to_an_existing_password_account(client, oauth_provider):
    registered = client.post("/api/v2/auth/register", json={"email": "ada@example.com", "password": STRONG_PASSWORD})
    account = me(client, registered.get_json())
    oauth_provider.set_user(sub="g-ada", email="ada@example.com", email_verified=True)
    assert me(client, login_with(client, "google"))["id"] == account["id"]
    password_login = client.post("/api/v2/auth/login", json={"email": "ada@example.com", "password": STRONG_PASSWORD})
    assert password_login.status_code == 200, "the password still works"


def test_an_unverified_email_does_not_link_to_an_existing_account(client, oauth_provider):
    client.post("/api/v2/auth/register", json={"email": "ada@example.com", "password": STRONG_PASSWORD})
    oauth_provider.set_user(sub="g-mallory", email="ada@example.com", email_verified=False)
    refused = finish(client, start(client, "google"))
    assert refused.status_code == 400 and refused.content_type == "application/problem+json"
    assert refused.get_json()["code"] == "unverified_email"
    oauth_provider.set_user(sub="g-mallory", email="ada@example.com", email_verified=True)
    assert me(client, login_with(client, "google"))["email"] == "ada@example.com"


def test_github_without_an_id_token_uses_the_verified_primary_email(client, oauth_provider):
    oauth_provider.set_github_user(id=7, login="octo", name="Octo Cat", public_email="public@example.com", emails=[
        {"email": "old@example.com", "primary": False, "verified": True},
        {"email": "octo@example.com", "primary": True, "verified": True}])
    account = me(client, login_with(client, "github"))
    assert account["email"] == "octo@example.com"
    assert me(client, login_with(client, "github"))["id"] == account["id"]


def test_github_falls_back_to_the_public_email_which_never_links(client, oauth_provider):
    oauth_provider.set_github_user(id=8, login="newbie", public_email="newbie@example.com",
                                   emails=[{"email": "newbie@example.com", "primary": True, "verified": False}])
    assert me(client, login_with(client, "github"))["email"] == "newbie@example.com"
    client.post("/api/v2/auth/register", json={"email": "taken@example.com", "password": STRONG_PASSWORD})
    oauth_provider.set_github_user(id=9, login="squatter", public_email="taken@example.com", emails=[])
    refused = finish(client, start(client, "github"))
    assert refused.status_code == 400 and refused.get_json()["code"] == "unverified_email"


def test_a_replayed_state_is_refused(client):
    callback = start(client, "google")
    assert finish(client, callback).status_code == 302
    replay = finish(client, callback)
    assert replay.status_code == 400 and replay.content_type == "application/problem+json"


def test_an_expired_state_is_refused(client, db):
    callback = start(client, "google")
    with db.transaction() as session:
        session.execute(update(OAuthTicket).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert finish(client, callback).status_code == 400


def test_a_state_from_another_browser_is_refused(client, app):
    callback = start(client, "google")
    stranger = app.test_client()
    assert finish(stranger, callback).status_code == 400
    # Fails closed: a state presented from the wrong browser is spent.
    assert finish(client, callback).status_code == 400


def test_a_forged_state_or_a_bad_code_is_refused(client):
    callback = start(client, "google")
    forged = callback.replace("state=", "state=forged")
    assert finish(client, forged).status_code == 400
    callback = start(client, "google")
    bad_code = callback.replace("code=", "code=bad")
    refused = finish(client, bad_code)
    assert refused.status_code == 400 and refused.content_type == "application/problem+json"


def test_the_one_time_code_works_once(client):
    params = frontend_params(finish(client, start(client, "google")))
    assert client.post("/api/v2/auth/oauth/exchange", json={"code": params["code"]}).status_code == 200
    again = client.post("/api/v2/auth/oauth/exchange", json={"code": params["code"]})
    assert again.status_code == 400 and again.get_json()["code"] == "invalid_code"


def test_an_expired_one_time_code_is_refused(client, db):
    params = frontend_params(finish(client, start(client, "google")))
    with db.transaction() as session:
        session.execute(update(OAuthTicket).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.post("/api/v2/auth/oauth/exchange", json={"code": params["code"]}).status_code == 400


def test_declining_at_the_provider_goes_back_to_the_frontend_with_an_error(client, oauth_provider):
    oauth_provider.deny_next()
    params = frontend_params(finish(client, start(client, "google")))
    assert params == {"error": "access_denied"}


def test_an_unknown_or_unconfigured_provider_is_404(client, settings):
    from web import create_app

    assert client.get("/api/v2/auth/oauth/gitlab/authorize").status_code == 404
    bare = create_app(settings.model_copy(update={"oauth_github_client_id": None})).test_client()
    assert bare.get("/api/v2/auth/oauth/github/authorize").status_code == 404
    assert [p["name"] for p in bare.get("/api/v2/auth/providers").get_json()["items"]] == ["google"]
