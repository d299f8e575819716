"""Log lines never keep a `token=` value, however the message was built."""
from __future__ import annotations

import logging

from shared.logging_setup import RedactQueryTokens


def test_token_values_in_messages_are_masked():
    redact = RedactQueryTokens()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET %s from %s", ("/api/v2/events?job_id=j&token=abc.def",
                                                                                 "127.0.0.1"), None)
    assert redact.filter(record)
    assert record.getMessage() == "GET /api/v2/events?job_id=j&token=[redacted] from 127.0.0.1"
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "access_token=s3cret; Token=xyz tokens=1", None, None)
    redact.filter(other)
    assert other.getMessage() == "access_token=[redacted]; Token=[redacted] tokens=1"
