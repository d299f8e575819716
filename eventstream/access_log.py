"""Access log lines without query strings: a stream URL may carry a stream token."""
from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_FORMAT = "%s %s %s %s %.3fs"


class AccessLog(AbstractAccessLogger):
    """Method, path (never the query), status, bytes, seconds and request id, as one JSON log line."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(_FORMAT, request.method, request.path, response.status, response.body_length, time,
                         extra={"request_id": request.get("request_id")})


def log_hangup(request: BaseRequest, response: StreamResponse, seconds: float) -> None:
    """The access line of a stream its client closed (aiohttp logs none for a cancelled handler)."""
    logging.getLogger("aiohttp.access").info(
        _FORMAT + " (client closed)", request.method, request.path, response.status, response.body_length,
        seconds, extra={"request_id": request.get("request_id")})
