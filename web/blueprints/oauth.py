"""Login with Google (OpenID Connect) or GitHub (OAuth 2), with PKCE and server-side state."""
from __future__ import annotations

import logging
from urllib.parse import urlencode

from authlib.common.errors import AuthlibBaseError
from flask import redirect, request, url_for
from flask_openapi3 import APIBlueprint, Tag
from requests import RequestException

from shared import accounts, oauth_login
from shared.errors import NotFound
from shared.oauth_login import OAuthLoginRefused, ProviderIdentity
from shared.schemas.auth import TokenResponse
from shared.schemas.oauth import ExchangeBody, ProviderList, ProviderOut, ProviderPath
from web.openapi import responses
from web.state import db_session, state

logger = logging.getLogger(__name__)
bp = APIBlueprint("oauth", __name__, url_prefix="/api/v2/auth", abp_tags=[Tag(name="auth")])
_REDIRECT = {"description": "Redirect to the provider, or back to the frontend",
             "headers": {"Location": {"schema": {"type": "string"}}}}


def _client(name: str):
    client = state().oauth.create_client(name)
    if client is None:
        raise NotFound(f"login with {name} is not configured")
    return client


@bp.get("/providers", responses=responses({200: ProviderList}))
def providers():
    """The login providers configured here."""
    names = [name for name in ("google", "github") if state().oauth.create_client(name) is not None]
    return ProviderList(items=[ProviderOut(name=name, authorize_url=url_for(".authorize", provider=name))
                               for name in names]).model_dump()


@bp.get("/oauth/<provider>/authorize", responses=responses({302: _REDIRECT}, 404))
def authorize(path: ProviderPath):
    """Send the browser to the provider; the state and PKCE verifier stay on the server."""
    client = _client(path.provider)
    base = state().settings.public_api_url
    callback = (base.rstrip("/") + url_for(".callback", provider=path.provider) if base
                else url_for(".callback", provider=path.provider, _external=True))
    try:
        return client.authorize_redirect(callback)
    except (AuthlibBaseError, RequestException) as error:
        logger.warning("%s authorization could not start: %s", path.provider, type(error).__name__)
        raise OAuthLoginRefused(f"{path.provider} is unavailable right now", code="provider_unavailable") from None


@bp.get("/oauth/<provider>/callback", responses=responses({302: _REDIRECT}, 400, 404))
def callback(path: ProviderPath):
    """Finish the login: check state and code, find or create the account, hand the frontend a one-time code."""
    client = _client(path.provider)
    if request.args.get("error"):
        # The user declined at the provider: a normal outcome, told to the frontend.
        if request.args.get("state"):
            state().oauth.cache.delete(f"_state_{path.provider}_{request.args['state']}")
        return _to_frontend(error=request.args["error"])
    try:
        token = client.authorize_access_token()
        identity = _identity(path.provider, client, token)
    except AuthlibBaseError as error:
        logger.info("%s callback refused: %s", path.provider, getattr(error, "error", type(error).__name__))
        raise OAuthLoginRefused("the login could not be completed: the state is invalid, expired or already used, "
                                "or the provider refused the code", code=getattr(error, "error", "invalid_request")
                                ) from None
    except (RequestException, ValueError, KeyError) as error:
        logger.warning("%s callback failed talking to the provider: %s", path.provider, type(error).__name__)
        raise OAuthLoginRefused(f"{path.provider} did not answer as expected", code="provider_error") from None
    session = db_session()
    user = oauth_login.resolve_account(session, identity)
    code = oauth_login.issue_login_code(session, user.id, state().settings.oauth_code_ttl_seconds)
    session.commit()
    return _to_frontend(code=code)


def _to_frontend(**params: str):
    return redirect(f"{state().settings.frontend_url.rstrip('/')}/auth/callback?{urlencode(params)}")


def _identity(provider: str, client, token: dict) -> ProviderIdentity:
    if provider == "google":
        # Authlib verified the id token (signature, iss, aud, exp, nonce) before returning it.
        info = token["userinfo"]
        return ProviderIdentity("google", str(info["sub"]), info.get("email"), bool(info.get("email_verified")),
                                info.get("name"))
    profile = client.get("user", token=token)
    profile.raise_for_status()
    user = profile.json()
    emails = client.get("user/emails", token=token)
    listed = emails.json() if emails.ok else []
    primary = next((e for e in listed if e.get("primary") and e.get("verified")), None)
    if primary is not None:
        return ProviderIdentity("github", str(user["id"]), primary["email"], True, user.get("name"))
    # No verified primary address: the public one may create an account but never links to one.
    return ProviderIdentity("github", str(user["id"]), user.get("email"), False, user.get("name"))


@bp.post("/oauth/exchange", responses=responses({200: TokenResponse}, 400))
def exchange(body: ExchangeBody):
    """Trade the one-time code from the callback for the usual token pair."""
    session = db_session()
    user = oauth_login.redeem_login_code(session, body.code)
    pair = accounts.issue_tokens(session, state().tokens, user, state().settings.refresh_token_ttl_seconds)
    session.commit()
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token,
                         expires_in=pair.expires_in).model_dump()
