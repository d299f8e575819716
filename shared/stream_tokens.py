"""Short-lived stream tokens: they allow reading one user's job events and nothing else.

The browser's EventSource cannot send an Authorization header, so it carries one of
these in the stream URL's query instead of the access token. A stream token is signed
with its own key (derived from SECRET_KEY apart from the access tokens' key) and bound
to its own audience and scope, so an access token is refused where a stream token is
meant and a stream token is refused by every other endpoint.

A token the API issues names the login (`sid`, the refresh-token family) whose access token
asked for it, so the stream process refuses it once that login is logged out, as the API
refuses the access token. Tokens made by operator tools (`devora jobs watch`) name none and
are checked against the account alone.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from shared.settings import Settings

STREAM_AUDIENCE = "devora-events"
STREAM_SCOPE = "events:read"


@dataclass(frozen=True)
class StreamClaims:
    """Whose events a stream token reads, and the login it was issued to (None: no login, e.g. an operator tool)."""

    user_id: uuid.UUID
    session_id: uuid.UUID | None = None


class StreamTokens:
    """Issues and checks HS256 stream tokens lasting EVENTS_TOKEN_TTL_SECONDS."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.secret_key.get_secret_value().encode()
        self._key = OctKey.import_key(hashlib.sha256(b"events-jwt:" + secret).digest())
        self._issuer = settings.jwt_issuer
        self.ttl = settings.events_token_ttl_seconds
        self._claims = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": STREAM_AUDIENCE},
            scope={"essential": True, "value": STREAM_SCOPE},
            exp={"essential": True},
            sub={"essential": True},
        )

    def issue(self, user_id: uuid.UUID, session_id: uuid.UUID | None = None) -> tuple[str, int]:
        """A token for `user_id`'s events, bound to the login `session_id` when given, and its expiry (epoch s)."""
        now = int(time.time())
        expires = now + self.ttl
        claims = {"iss": self._issuer, "aud": STREAM_AUDIENCE, "scope": STREAM_SCOPE, "sub": str(user_id),
                  "iat": now, "exp": expires, "jti": uuid.uuid4().hex}
        if session_id is not None:
            claims["sid"] = str(session_id)
        return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, self._key), expires

    def claims(self, token: str) -> StreamClaims | None:
        """The token's user and login, or None when it is not a valid stream token."""
        try:
            decoded = jwt.decode(token, self._key, algorithms=["HS256"])
            self._claims.validate(decoded.claims)
            sid = decoded.claims.get("sid")
            return StreamClaims(uuid.UUID(decoded.claims["sub"]), uuid.UUID(sid) if sid else None)
        except (JoseError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def verify(self, token: str) -> uuid.UUID | None:
        """The user whose events the token allows reading, or None when it is not a valid stream token."""
        claims = self.claims(token)
        return claims.user_id if claims is not None else None
