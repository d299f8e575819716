"""URLs must be UTF-8: a path or query string whose bytes (raw or percent-escaped) are not valid UTF-8 is refused.

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
            path = unquote_to_bytes(_wsgi_bytes(raw_uri.partition("?")[0]))
        else:  # the percent-decoded path
            path = _wsgi_bytes(request.environ.get("PATH_INFO", ""))
        query = unquote_to_bytes(_wsgi_bytes(request.environ.get("QUERY_STRING", "")).replace(b"+", b" "))
        for part, raw in (("path", path), ("query string", query)):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvalidURL(f"the URL's {part} is not valid UTF-8 (byte 0x{raw[error.start]:02x}, sent as it is "
                                 f"or percent-escaped, cannot start or continue a character there)",
                                 part=part) from None


def _wsgi_bytes(text: str) -> bytes:
    """The bytes the client sent: PEP 3333 gives the URL's parts as Latin-1 text of them.

    Passing the text itself to `unquote_to_bytes` would encode it as UTF-8, turning a raw 0xff
    (sent unescaped, which gunicorn refuses but other servers pass on) into valid UTF-8.
    """
    return text.encode("latin-1", "replace")
