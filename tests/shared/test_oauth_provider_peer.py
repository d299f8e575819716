"""The OAuth test provider speaks both flows over real HTTP and enforces PKCE as the app's tests assume."""
from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qsl, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.peers.oauth_provider import OAuthProvider

REDIRECT_URI = "http://127.0.0.1:5999/callback"


def pkce_pair() -> tuple[str, str]:
    """A fresh code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize(url: str, client_id: str, scope: str, **params: str) -> dict[str, str]:
    """Run one authorize request and return the query the provider redirected back with."""
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
             "scope": scope, "state": "st-1", **params}
    response = requests.get(url, params=query, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return dict(parse_qsl(location.query))


def google_code(provider: OAuthProvider, challenge: str, nonce: str = "n-1") -> str:
    metadata = requests.get(provider.google_metadata_url, timeout=5).json()
    answer = authorize(metadata["authorization_endpoint"], "google-client", "openid email profile",
                       nonce=nonce, code_challenge=challenge, code_challenge_method="S256")
    assert answer["state"] == "st-1"
    return answer["code"]


def google_token(provider: OAuthProvider, code: str, verifier: str) -> requests.Response:
    return requests.post(f"{provider.url}/oauth/token", auth=("google-client", "google-secret"), timeout=5,
                         data={"grant_type": "authorization_code", "code": code,
                               "redirect_uri": REDIRECT_URI, "code_verifier": verifier})


def test_oidc_code_flow_issues_a_verifiable_id_token(oauth_provider: OAuthProvider) -> None:
    oauth_provider.set_user(sub="g-123", email="ada@example.com", email_verified=True, name="Ada")
    metadata = requests.get(oauth_provider.google_metadata_url, timeout=5).json()
    assert metadata["issuer"] == oauth_provider.url
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    verifier, challenge = pkce_pair()

    response = google_token(oauth_provider, google_code(oauth_provider, challenge), verifier)

    assert response.status_code == 200, response.text
    token = response.json()
    keys = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=5).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": oauth_provider.url},
                          aud={"essential": True, "value": "google-client"}).validate(claims)
    assert (claims["sub"], claims["email"], claims["email_verified"], claims["name"], claims["nonce"]) == (
        "g-123", "ada@example.com", True, "Ada", "n-1")
    userinfo = requests.get(metadata["userinfo_endpoint"], timeout=5,
                            headers={"Authorization": f"Bearer {token['access_token']}"})
    assert userinfo.json()["email"] == "ada@example.com"
    assert oauth_provider.token_requests == [{
        "role": "oidc", "grant_type": "authorization_code", "client_id": "google-client",
        "code_verifier_present": True, "pkce_verified": True, "status": 200, "error": None}]


def test_a_wrong_verifier_is_refused_and_recorded(oauth_provider: OAuthProvider) -> None:
    _, challenge = pkce_pair()
    other_verifier, _ = pkce_pair()

    response = google_token(oauth_provider, google_code(oauth_provider, challenge), other_verifier)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    record = oauth_provider.token_requests[-1]
    assert (record["code_verifier_present"], record["pkce_verified"], record["error"]) == (
        True, False, "invalid_grant")


def test_an_authorize_request_without_a_challenge_is_refused(oauth_provider: OAuthProvider) -> None:
    answer = authorize(f"{oauth_provider.url}/oauth/authorize", "google-client", "openid email")

    assert answer["error"] == "invalid_request" and answer["state"] == "st-1" and "code" not in answer


def test_a_code_is_single_use(oauth_provider: OAuthProvider) -> None:
    verifier, challenge = pkce_pair()
    code = google_code(oauth_provider, challenge)

    assert google_token(oauth_provider, code, verifier).status_code == 200
    replay = google_token(oauth_provider, code, verifier)

    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    assert [r["error"] for r in oauth_provider.token_requests] == [None, "invalid_grant"]


def test_github_flow_and_api(oauth_provider: OAuthProvider) -> None:
    oauth_provider.set_github_user(id=42, login="octo", name="Octo", public_email=None,
                                   emails=[{"email": "octo@example.com", "primary": True, "verified": True}])
    verifier, challenge = pkce_pair()
    answer = authorize(oauth_provider.github_authorize_url, "github-client", "read:user user:email",
                       code_challenge=challenge, code_challenge_method="S256")
    exchange = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier, "client_id": "github-client", "client_secret": "github-secret"}

    response = requests.post(oauth_provider.github_token_url, data=exchange, timeout=5)

    assert response.headers["Content-Type"] == "application/x-www-form-urlencoded"
    access_token = dict(parse_qsl(response.text))["access_token"]
    assert "id_token" not in response.text
    assert oauth_provider.token_requests[-1]["pkce_verified"] is True
    user = requests.get(f"{oauth_provider.github_api_base_url}user", timeout=5,
                        headers={"Authorization": f"Bearer {access_token}"})
    assert user.json() == {"id": 42, "login": "octo", "name": "Octo", "email": None}
    emails = requests.get(f"{oauth_provider.github_api_base_url}user/emails", timeout=5,
                          headers={"Authorization": f"token {access_token}"})
    assert emails.json() == [{"email": "octo@example.com", "primary": True, "verified": True,
                              "visibility": "private"}]
    assert requests.get(f"{oauth_provider.github_api_base_url}user", timeout=5).status_code == 401
    bogus = requests.get(f"{oauth_provider.github_api_base_url}user/emails", timeout=5,
                         headers={"Authorization": "Bearer nope"})
    assert bogus.status_code == 401


def test_github_token_endpoint_answers_json_when_asked_and_wants_the_verifier(oauth_provider: OAuthProvider) -> None:
    _, challenge = pkce_pair()
    answer = authorize(oauth_provider.github_authorize_url, "github-client", "read:user user:email",
                       code_challenge=challenge, code_challenge_method="S256")

    response = requests.post(oauth_provider.github_token_url, headers={"Accept": "application/json"},
                             data={"grant_type": "authorization_code", "code": answer["code"],
                                   "redirect_uri": REDIRECT_URI, "client_id": "github-client",
                                   "client_secret": "github-secret"}, timeout=5)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert oauth_provider.token_requests[-1]["code_verifier_present"] is False


def test_deny_next_refuses_once(oauth_provider: OAuthProvider) -> None:
    _, challenge = pkce_pair()
    oauth_provider.deny_next()
    params = {"code_challenge": challenge, "code_challenge_method": "S256"}

    denied = authorize(oauth_provider.github_authorize_url, "github-client", "read:user", **params)
    allowed = authorize(oauth_provider.github_authorize_url, "github-client", "read:user", **params)

    assert denied["error"] == "access_denied" and denied["error_description"] and denied["state"] == "st-1"
    assert "code" not in denied and "code" in allowed
