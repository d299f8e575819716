"""OAuth login: single-use tickets, and turning a provider identity into an account."""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.accounts import normalize_email
from shared.db import Database
from shared.errors import DomainError
from shared.models import OAuthIdentity, OAuthTicket, User
from shared.models.base import utcnow


class OAuthLoginRefused(DomainError):
    status, title, type_slug = 400, "OAuth login refused", "oauth-login-refused"


@dataclass(frozen=True)
class ProviderIdentity:
    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None


def take_ticket(session: Session, key: str, kind: str) -> str | None:
    """Consume a ticket: the first caller gets its value, every later one (and after expiry) gets None."""
    value = session.execute(
        delete(OAuthTicket).where(OAuthTicket.key == key, OAuthTicket.kind == kind,
                                  OAuthTicket.expires_at > utcnow()).returning(OAuthTicket.value)
    ).scalar_one_or_none()
    return value


def put_ticket(session: Session, key: str, kind: str, value: str, ttl_seconds: int) -> None:
    session.merge(OAuthTicket(key=key, kind=kind, value=value, expires_at=utcnow() + timedelta(seconds=ttl_seconds)))


class StateStore:
    """Server-side storage for Authlib's authorization-request state: expiring and single use.

    Authlib keeps only a marker in the browser's session cookie and the state data
    (PKCE verifier, nonce, redirect URI) here; reading it consumes it, so a replayed
    or raced callback finds nothing.
    """

    def __init__(self, db: Database, ttl_seconds: int) -> None:
        self._db, self._ttl = db, ttl_seconds

    def get(self, key: str) -> str | None:
        with self._db.transaction() as session:
            return take_ticket(session, key, "state")

    def set(self, key: str, value: str, expires: int | None = None) -> None:
        with self._db.transaction() as session:
            put_ticket(session, key, "state", value, self._ttl)

    def delete(self, key: str) -> None:
        with self._db.transaction() as session:
            session.execute(delete(OAuthTicket).where(OAuthTicket.key == key, OAuthTicket.kind == "state"))


def _code_key(code: str) -> str:
    return "code:" + hashlib.sha256(code.encode()).hexdigest()


def issue_login_code(session: Session, user_id: uuid.UUID, ttl_seconds: int) -> str:
    """A one-time code the frontend exchanges for tokens, so tokens never travel in a URL."""
    code = secrets.token_urlsafe(32)
    put_ticket(session, _code_key(code), "login_code", str(user_id), ttl_seconds)
    return code


def redeem_login_code(session: Session, code: str) -> User:
    user_id = take_ticket(session, _code_key(code), "login_code")
    user = session.get(User, uuid.UUID(user_id)) if user_id else None
    if user is None or not user.is_active:
        raise OAuthLoginRefused("the login code is invalid, expired or already used", code="invalid_code")
    return user


def resolve_account(session: Session, identity: ProviderIdentity) -> User:
    """The account for a provider identity: linked before, linked now by verified email, or new."""
    linked = session.scalar(select(User).join(OAuthIdentity, OAuthIdentity.user_id == User.id).where(
        OAuthIdentity.provider == identity.provider, OAuthIdentity.subject == identity.subject))
    if linked is not None:
        if not linked.is_active:
            raise OAuthLoginRefused("this account is disabled", code="account_disabled")
        return linked
    if not identity.email:
        raise OAuthLoginRefused(f"{identity.provider} did not share an email address", code="email_required")
    email = normalize_email(identity.email)
    user = session.scalar(select(User).where(User.email == email))
    if user is not None and not identity.email_verified:
        # Linking on an unverified address would let anyone who types someone else's
        # email at the provider take over that account.
        raise OAuthLoginRefused(
            f"an account with this email exists, and {identity.provider} has not verified the address; "
            "log in with your password instead", code="unverified_email")
    if user is None:
        user = User(email=email, password_hash=None, full_name=identity.name)
        session.add(user)
        session.flush()
    try:
        with session.begin_nested():
            session.add(OAuthIdentity(user_id=user.id, provider=identity.provider, subject=identity.subject,
                                      email=email, created_at=utcnow()))
    except IntegrityError:
        raise OAuthLoginRefused("this sign-in is already being processed; try again", code="conflict") from None
    return user


def purge_expired_tickets(session: Session, now: datetime) -> int:
    return session.execute(delete(OAuthTicket).where(OAuthTicket.expires_at <= now)).rowcount
