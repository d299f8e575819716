"""Process-wide logging: JSON lines on stderr, with request, user, job and task ids."""
from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

from shared.logcontext import ContextFilter
from shared.settings import Settings

_MARK = "_devora_handler"
# A stream URL carries its stream token in the query (`?token=`); no log line may keep it.
_QUERY_TOKEN = re.compile(r"(?i)\b((?:access_|refresh_)?token=)[^&\s\"';,]+")


class RedactQueryTokens(logging.Filter):
    """Masks the value of any `token=` in a log message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message.lower():
            record.msg, record.args = _QUERY_TOKEN.sub(r"\1[redacted]", message), None
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (process managers and test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(settings: Settings) -> None:
    """Install one JSON handler on the root logger (idempotent, so every entry point may call it)."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    if any(getattr(handler, _MARK, False) for handler in root.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                                       rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactQueryTokens())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    # The SDK logs request and response bodies (customer emails, and error texts that a
    # peer may echo the key into) below WARNING; the gateway logs failures itself.
    logging.getLogger("stripe").setLevel(logging.WARNING)
