"""Accounts: registration, password login and refresh-token rotation."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import Conflict, Unauthorized
from shared.models import RefreshToken, User
from shared.models.base import utcnow
from shared.security import (
    TokenService, hash_password, hash_token, new_refresh_token, successor_token, verify_password,
)


class RefreshTokenReused(Unauthorized):
    """A rotated token came back: its family is revoked, and that revocation must be committed."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def normalize_email(email: str) -> str:
    return email.strip().lower()


def register(session: Session, email: str, password: str, full_name: str | None) -> User:
    """Create a password account; 409 when the email is taken."""
    user = User(email=normalize_email(email), password_hash=hash_password(password), full_name=full_name)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict("an account with this email already exists") from None
    return user


def authenticate(session: Session, email: str, password: str) -> User:
    """The active user with these credentials, or 401 without saying which part was wrong."""
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if not verify_password(user.password_hash if user else None, password) or not user.is_active:
        raise Unauthorized("invalid email or password")
    return user


def issue_tokens(session: Session, tokens: TokenService, user: User, refresh_ttl: int,
                 family_id: uuid.UUID | None = None, raw: str | None = None) -> TokenPair:
    """A new access token and a refresh token `raw` (random by default) in `family_id` (a new login by default)."""
    raw = raw or new_refresh_token()
    family_id = family_id or uuid.uuid4()
    now = utcnow()
    session.add(RefreshToken(user_id=user.id, family_id=family_id, token_hash=hash_token(raw),
                             created_at=now, expires_at=now + timedelta(seconds=refresh_ttl)))
    return TokenPair(tokens.issue(user.id, user.role, family_id), raw, tokens.ttl)


@dataclass(frozen=True)
class Rotation:
    """How refresh tokens rotate: their lifetime, and the grace in which a concurrent use is no reuse."""

    refresh_ttl: int
    grace_seconds: float
    secret_key: str


def rotate_refresh_token(session: Session, tokens: TokenService, raw: str, rotation: Rotation) -> TokenPair:
    """Exchange a refresh token for a new pair; reuse of a rotated token revokes its whole login.

    Two tabs refreshing at once present the same token: within the grace window the later
    one is given the same successor refresh token (derived from the old one, so it need not
    be stored), not treated as a thief. A reuse after the window revokes the login.
    """
    record = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(raw)))
    now = utcnow()
    if record is None or record.revoked_at is not None or record.expires_at <= now:
        raise Unauthorized("refresh token is invalid or expired")
    user = session.get(User, record.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("refresh token is invalid or expired")
    successor = successor_token(rotation.secret_key, raw)
    # The conditional update makes rotation atomic: of two concurrent uses, exactly one
    # issues the successor.
    won = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == record.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
    ).rowcount
    if won:
        return issue_tokens(session, tokens, user, rotation.refresh_ttl, family_id=record.family_id, raw=successor)
    session.refresh(record)
    issued = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(successor),
                                                       RefreshToken.revoked_at.is_(None)))
    if issued is not None and now - record.rotated_at <= timedelta(seconds=rotation.grace_seconds):
        return TokenPair(tokens.issue(user.id, user.role, record.family_id), successor, tokens.ttl)
    revoke_family(session, record.family_id)
    raise RefreshTokenReused("refresh token was already used; every session from that login is revoked")


def session_revoked(family_id: uuid.UUID):
    """A SQL condition: the login `family_id` was logged out or caught reusing a refresh token."""
    return exists().where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_not(None))


def revoke_family(session: Session, family_id: uuid.UUID) -> None:
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def logout(session: Session, raw: str, user_id: uuid.UUID) -> None:
    """Revoke the family of a refresh token belonging to `user_id`; unknown tokens are ignored."""
    record = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(raw)))
    if record is not None and record.user_id == user_id:
        revoke_family(session, record.family_id)
