"""Bearer-token authentication for views and for the rate-limit key.

A route declares that it needs a token by its OpenAPI `security`, and that declaration is
the check: `init_authentication` authenticates exactly the operations that declare it, before
their input is validated, so the document and the behaviour cannot drift apart.
"""
from __future__ import annotations

import re
import uuid

from flask import g, request
from flask_openapi3 import OpenAPI

from shared import logcontext
from shared.errors import Unauthorized
from shared.models import User
from shared.quick_reads import Account
from shared.security import AccessClaims
from web.state import db_session, state

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="devora"'}


def bearer_claims() -> AccessClaims | None:
    """Claims of a valid bearer token on this request, checked once per request."""
    if "bearer_claims" not in g:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        g.bearer_claims = state().tokens.verify(token.strip()) if scheme.lower() == "bearer" and token else None
        if g.bearer_claims is not None:
            logcontext.user_id.set(str(g.bearer_claims.user_id))
    return g.bearer_claims


def authenticated_account() -> Account:
    """The active account of the request's bearer token, or a 401 problem (read once per request).

    One read answers both: the account is active, and the login the token belongs to was not
    logged out (nor revoked for refresh-token reuse) since it was issued.
    """
    if "account" in g:
        return g.account
    claims = bearer_claims()
    if claims is None:
        raise Unauthorized("a valid bearer access token is required", headers=_CHALLENGE)
    account = state().reads.account(claims.user_id, claims.session_id)
    if account is None or not account.is_active:
        raise Unauthorized("the account for this token no longer exists", headers=_CHALLENGE)
    if account.logged_out:
        raise Unauthorized("this login was logged out; log in again", headers=_CHALLENGE)
    g.account = account
    return account


def current_user_id() -> uuid.UUID:
    """The authenticated user's id (most views need nothing more of the account)."""
    return authenticated_account().user_id


def current_user() -> User:
    """The authenticated user as a model, for views that change the account or read more of it."""
    if "current_user" in g:
        return g.current_user
    user = db_session().get(User, authenticated_account().user_id)
    if user is None:
        raise Unauthorized("the account for this token no longer exists", headers=_CHALLENGE)
    g.current_user = user
    return user


def rate_limit_key() -> str:
    """Authenticated requests are limited per user, anonymous ones per client address."""
    claims = bearer_claims()
    return f"user:{claims.user_id}" if claims else client_address_key()


def client_address_key() -> str:
    # The client's address as the trusted proxies (ProxyFix, TRUSTED_PROXY_HOPS) tell it.
    return f"addr:{request.remote_addr or '127.0.0.1'}"


def init_authentication(app: OpenAPI) -> None:
    """Authenticate every request to an operation whose OpenAPI declaration names a security scheme."""
    protected = _protected_endpoints(app)

    @app.before_request
    def _authenticate() -> None:
        if (request.endpoint, request.method) in protected:
            authenticated_account()


def _protected_endpoints(app: OpenAPI) -> frozenset[tuple[str, str]]:
    protected = set()
    for rule in app.url_map.iter_rules():
        # /jobs/<uuid:job_id> is /jobs/{job_id} in the document.
        item = app.paths.get(re.sub(r"<([^<:]+:)?", "{", rule.rule).replace(">", "}"))
        for method in rule.methods or ():
            operation = getattr(item, method.lower(), None) if item is not None else None
            if operation is not None and operation.security:
                protected.add((rule.endpoint, method))
    return frozenset(protected)
