"""Accounts: registration, password login and refresh-token rotation."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import Conflict, Unauthorized
from shared.models import RefreshToken, User
from shared.models.base import utcnow
from shared.security import TokenService, hash_password, hash_token, new_refresh_token, verify_password


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
                 family_id: uuid.UUID | None = None) -> TokenPair:
    """A new access token and a refresh token in `family_id` (a new family by default)."""
    raw = new_refresh_token()
    now = utcnow()
    session.add(RefreshToken(user_id=user.id, family_id=family_id or uuid.uuid4(), token_hash=hash_token(raw),
                             created_at=now, expires_at=now + timedelta(seconds=refresh_ttl)))
    return TokenPair(tokens.issue(user.id, user.role), raw, tokens.ttl)


def rotate_refresh_token(session: Session, tokens: TokenService, raw: str, refresh_ttl: int) -> TokenPair:
    """Exchange a refresh token for a new pair; reuse of a rotated token revokes its family."""
    record = session.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(raw)))
    now = utcnow()
    if record is None or record.revoked_at is not None or record.expires_at <= now:
        raise Unauthorized("refresh token is invalid or expired")
    # The conditional update makes rotation atomic: of two concurrent uses, one wins
    # and the other is treated as reuse.
    won = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == record.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
    ).rowcount
    if not won:
        revoke_family(session, record.family_id)
        raise RefreshTokenReused("refresh token was already used; every session from that login is revoked")
    user = session.get(User, record.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("refresh token is invalid or expired")
    return issue_tokens(session, tokens, user, refresh_ttl, family_id=record.family_id)


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
