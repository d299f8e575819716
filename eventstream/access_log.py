"""Access log lines without query strings: a stream URL may carry a stream token."""
from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_FORMAT = "%s %s %s %s %.3fs"
# Set on a request whose stream wrote its own line (see log_stream_end).
LOGGED = "access_logged"


class AccessLog(AbstractAccessLogger):
    """Method, path (never the query), status, bytes, seconds and request id, as one JSON log line."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.get(LOGGED):
            return
        self.logger.info(_FORMAT, request.method, request.path, response.status, response.body_length, time,
                         extra={"request_id": request.get("request_id")})


def log_stream_end(request: BaseRequest, response: StreamResponse, seconds: float, how: str) -> None:
    """The access line of a stream, written when it ends however it ends.

    aiohttp writes none for a handler cancelled because its client hung up, nor when the
    hang-up interrupts the end of the response, so streams log themselves.
    """
    request[LOGGED] = True
    logging.getLogger("aiohttp.access").info(
        _FORMAT + " (%s)", request.method, request.path, response.status, response.body_length, seconds, how,
        extra={"request_id": request.get("request_id")})
