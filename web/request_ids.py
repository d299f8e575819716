"""X-Request-ID: accepted from the caller (or made up), returned, and put on every log line."""
from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from shared import logcontext

_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def init_request_ids(app: Flask) -> None:
    @app.before_request
    def _bind() -> None:
        offered = request.headers.get("X-Request-ID", "")
        # A caller's id is kept only if it is safe to echo and to log verbatim.
        g.request_id = offered if _ACCEPTABLE.match(offered) else uuid.uuid4().hex
        logcontext.request_id.set(g.request_id)
        logcontext.user_id.set(None)

    @app.after_request
    def _echo(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None = None) -> None:
        logcontext.request_id.set(None)
        logcontext.user_id.set(None)
