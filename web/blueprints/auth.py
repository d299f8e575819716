"""Registration, password login and token refresh."""
from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from shared import accounts
from shared.schemas.auth import LoginBody, RefreshBody, RegisterBody, TokenResponse, UserOut
from web.auth import authenticated_account, current_user_id
from web.openapi import BEARER, responses
from web.state import db_session, state

bp = APIBlueprint("auth", __name__, url_prefix="/api/v2/auth", abp_tags=[Tag(name="auth")])


def _token_body(pair: accounts.TokenPair) -> dict:
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token,
                         expires_in=pair.expires_in).model_dump()


@bp.post("/register", responses=responses({201: TokenResponse}, 409))
def register(body: RegisterBody):
    """Create a password account and log it in."""
    session = db_session()
    user = accounts.register(session, body.email, body.password, body.full_name)
    pair = accounts.issue_tokens(session, state().tokens, user, state().settings.refresh_token_ttl_seconds)
    session.commit()
    return _token_body(pair), 201


@bp.post("/login", responses=responses({200: TokenResponse}, 401))
def login(body: LoginBody):
    """Exchange email and password for tokens."""
    session = db_session()
    user = accounts.authenticate(session, body.email, body.password)
    pair = accounts.issue_tokens(session, state().tokens, user, state().settings.refresh_token_ttl_seconds)
    session.commit()
    return _token_body(pair)


@bp.post("/refresh", responses=responses({200: TokenResponse}, 401))
def refresh(body: RefreshBody):
    """Rotate a refresh token: the old one stops working, a new pair is returned."""
    session = db_session()
    try:
        pair = accounts.rotate_refresh_token(session, state().tokens, body.refresh_token, _rotation())
    except accounts.RefreshTokenReused:
        session.commit()  # keep the family revocation
        raise
    session.commit()
    return _token_body(pair)


def _rotation() -> accounts.Rotation:
    settings = state().settings
    return accounts.Rotation(refresh_ttl=settings.refresh_token_ttl_seconds,
                             grace_seconds=settings.refresh_reuse_grace_seconds,
                             secret_key=settings.secret_key.get_secret_value())


@bp.post("/logout", responses=responses({204: None}, 401), security=BEARER)
def logout(body: RefreshBody):
    """Log out: the refresh token, every token rotated from the same login and their access tokens stop working."""
    session = db_session()
    accounts.logout(session, body.refresh_token, current_user_id())
    session.commit()
    return "", 204


@bp.get("/me", responses=responses({200: UserOut}, 401), security=BEARER)
def me():
    """The authenticated account."""
    account = authenticated_account()
    return Response(UserOut(id=account.user_id, email=account.email, full_name=account.full_name, role=account.role,
                            created_at=account.created_at).model_dump_json(), mimetype="application/json")
