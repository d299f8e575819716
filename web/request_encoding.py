"""URLs must be UTF-8: a path or query string whose percent-escapes decode to invalid UTF-8 is refused.

Werkzeug decodes such bytes with replacement characters, so `%c0%af` and `%ff%fe` would both
name the file "\ufffd\ufffd"; two different requests must never read as the same one.
"""
from __future__ import annotations

from urllib.parse import unquote_to_bytes

from flask import Flask, request

from shared.errors import DomainError


class InvalidURL(DomainError):
    status, title, type_slug = 400, "Bad request", "invalid-url-encoding"


def init_url_checks(app: Flask) -> None:
    @app.before_request
    def _utf8_only() -> None:
        # The URL as the client sent it (gunicorn and Werkzeug both keep it): PATH_INFO may have
        # been decoded already, invalid bytes replaced.
        raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
        if raw_uri:
            path = unquote_to_bytes(raw_uri.partition("?")[0])
        else:  # PEP 3333: the percent-decoded path as Latin-1 text of its bytes
            path = request.environ.get("PATH_INFO", "").encode("latin-1", "replace")
        query = unquote_to_bytes(request.environ.get("QUERY_STRING", "").replace("+", " "))
        for part, raw in (("path", path), ("query string", query)):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvalidURL(f"the URL's {part} is not valid UTF-8 (a percent-escape decodes to byte "
                                 f"0x{raw[error.start]:02x}, which cannot start or continue a character there)",
                                 part=part) from None
