"""Who is reading: a bearer access token in the header, or a stream token in the query; and may they still."""
from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from shared.errors import ServiceUnavailable, Unauthorized
from shared.quick_reads import QuickReads
from shared.security import TokenService
from shared.stream_tokens import StreamTokens

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="devora"'}
# Threads reading accounts; each keeps one database connection (QuickReads), so this bounds them.
ACCOUNT_READ_THREADS = 4


@dataclass(frozen=True)
class Reader:
    """The user whose events may be read, and the login the credential belongs to (None: none named)."""

    user_id: uuid.UUID
    session_id: uuid.UUID | None


def authenticate(request: web.Request, tokens: TokenService, stream_tokens: StreamTokens) -> Reader:
    """The reader a validly signed credential names, or a 401 problem (see AccountChecks for the rest).

    Each credential is accepted in one place only: an access token in Authorization, a
    stream token in `?token=` (for EventSource, which cannot send headers). An access
    token in the query is refused, so long-lived credentials never land in URLs.
    """
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        claims = tokens.verify(token.strip()) if scheme.lower() == "bearer" and token else None
        if claims is None:
            raise Unauthorized("a valid bearer access token is required", headers=_CHALLENGE)
        return Reader(claims.user_id, claims.session_id)
    query_token = request.query.get("token")
    if query_token:
        stream_claims = stream_tokens.claims(query_token)
        if stream_claims is None:
            raise Unauthorized("the stream token is invalid or has expired; ask POST /api/v2/events/token "
                               "for a new one", headers=_CHALLENGE)
        return Reader(stream_claims.user_id, stream_claims.session_id)
    raise Unauthorized("a bearer access token, or a stream token in ?token=, is required", headers=_CHALLENGE)


class AccountChecks:
    """Whether a reader may (still) read: the account exists and is active, and its login was not logged out.

    The same one-statement read as the API's (shared.quick_reads), run on a few threads of its
    own so the event loop never waits on the database.
    """

    def __init__(self, engine: Engine, threads: int = ACCOUNT_READ_THREADS) -> None:
        self._reads = QuickReads(engine)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="account-read")

    async def refusal(self, reader: Reader) -> str | None:
        """Why the reader may not read now, or None; SQLAlchemyError when the database did not answer."""
        loop = asyncio.get_running_loop()
        account = await loop.run_in_executor(self._executor, self._reads.account, reader.user_id, reader.session_id)
        if account is None or not account.is_active:
            return "the account for this token no longer exists"
        if account.logged_out:
            return "this login was logged out; log in again"
        return None

    async def require(self, reader: Reader) -> None:
        """Nothing, or the 401 (or 503 while the database is away) a stream opening is answered with."""
        try:
            refusal = await self.refusal(reader)
        except SQLAlchemyError:
            raise ServiceUnavailable("the account database did not answer; retry shortly",
                                     headers={"Retry-After": "5"}) from None
        if refusal is not None:
            raise Unauthorized(refusal, headers=_CHALLENGE)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
