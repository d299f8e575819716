"""Password hashing, access-token JWTs and opaque refresh-token material."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from shared.settings import Settings

# argon2-cffi's defaults are the RFC 9106 "low memory" argon2id profile.
_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown email as slow as a real one.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; constant work whether or not a hash exists."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Refresh tokens are high-entropy, so a plain SHA-256 is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def successor_token(secret_key: str, raw: str) -> str:
    """The refresh token that rotating `raw` issues: derived, not random, so a concurrent refresh
    with the same token can be handed the same successor without it being stored anywhere."""
    key = hashlib.sha256(b"refresh-successor:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(hmac.new(key, raw.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    # The login (refresh-token family) the token was issued for; a logout revokes it.
    session_id: uuid.UUID | None = None


# Verified tokens remembered per process: a client polling with one token pays for its
# signature and claim checks once, not on every request.
VERIFIED_TOKENS_KEPT = 4096


class TokenService:
    """Issues and checks short-lived HS256 access tokens bound to our issuer and audience."""

    def __init__(self, settings: Settings) -> None:
        self._key = OctKey.import_key(hashlib.sha256(b"jwt:" + settings.secret_key.get_secret_value().encode()).digest())
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.ttl = settings.access_token_ttl_seconds
        self._claims = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": self._audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        # token -> (claims, expiry); keyed by the whole token, so only that exact string matches.
        self._verified: dict[str, tuple[AccessClaims, float]] = {}
        self._verified_lock = threading.Lock()

    def issue(self, user_id: uuid.UUID, role: str, session_id: uuid.UUID) -> str:
        now = int(time.time())
        claims = {"iss": self._issuer, "aud": self._audience, "sub": str(user_id), "sid": str(session_id),
                  "role": role, "iat": now, "exp": now + self.ttl, "jti": uuid.uuid4().hex}
        return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, self._key)

    def verify(self, token: str) -> AccessClaims | None:
        """The token's claims, or None when the signature, exp, iss or aud is wrong."""
        kept = self._verified.get(token)
        if kept is not None and time.time() < kept[1]:
            return kept[0]
        try:
            decoded = jwt.decode(token, self._key, algorithms=["HS256"])
            self._claims.validate(decoded.claims)
            sid = decoded.claims.get("sid")
            claims = AccessClaims(uuid.UUID(decoded.claims["sub"]), str(decoded.claims.get("role", "user")),
                                  uuid.UUID(sid) if sid else None)
            expires_at = float(decoded.claims["exp"])
        except (JoseError, ValueError, KeyError, TypeError):
            return None
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                # The oldest entry goes first (dicts keep insertion order).
                self._verified.pop(next(iter(self._verified)))
            self._verified[token] = (claims, expires_at)
        return claims
