"""Who is reading: a bearer access token in the header, or a stream token in the query."""
from __future__ import annotations

import uuid

from aiohttp import web

from shared.errors import Unauthorized
from shared.security import TokenService
from shared.stream_tokens import StreamTokens

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="devora"'}


def authenticate(request: web.Request, tokens: TokenService, stream_tokens: StreamTokens) -> uuid.UUID:
    """The user whose events may be read, or a 401 problem.

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
        return claims.user_id
    query_token = request.query.get("token")
    if query_token:
        user_id = stream_tokens.verify(query_token)
        if user_id is None:
            raise Unauthorized("the stream token is invalid or has expired; ask POST /api/v2/events/token "
                               "for a new one", headers=_CHALLENGE)
        return user_id
    raise Unauthorized("a bearer access token, or a stream token in ?token=, is required", headers=_CHALLENGE)
