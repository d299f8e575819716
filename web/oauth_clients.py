"""The OAuth login providers, registered on Authlib's Flask client from settings."""
from __future__ import annotations

from authlib.integrations.flask_client import OAuth
from flask import Flask

from shared.db import Database
from shared.oauth_login import StateStore
from shared.settings import Settings

PKCE = {"code_challenge_method": "S256"}


def init_oauth(app: Flask, settings: Settings, db: Database) -> OAuth:
    """Register each provider whose client id is configured; state is kept server side."""
    oauth = OAuth(app, cache=StateStore(db, settings.oauth_state_ttl_seconds))
    timeout = settings.oauth_timeout_seconds
    if settings.oauth_google_client_id:
        oauth.register(
            "google",
            client_id=settings.oauth_google_client_id,
            client_secret=settings.oauth_google_client_secret.get_secret_value(),
            server_metadata_url=settings.oauth_google_metadata_url,
            client_kwargs={"scope": "openid email profile", "timeout": timeout, **PKCE},
        )
    if settings.oauth_github_client_id:
        oauth.register(
            "github",
            client_id=settings.oauth_github_client_id,
            client_secret=settings.oauth_github_client_secret.get_secret_value(),
            authorize_url=settings.oauth_github_authorize_url,
            access_token_url=settings.oauth_github_token_url,
            api_base_url=settings.oauth_github_api_base_url,
            # GitHub expects the client credentials in the form body.
            client_kwargs={"scope": "read:user user:email", "timeout": timeout,
                           "token_endpoint_auth_method": "client_secret_post", **PKCE},
        )
    return oauth
