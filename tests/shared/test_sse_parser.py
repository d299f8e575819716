"""The server-sent event line parser, against the WHATWG rules."""
from __future__ import annotations

from shared.sse import EventStreamParser, ServerSentEvent, split_lines


def parse(text: str) -> tuple[list[ServerSentEvent], EventStreamParser]:
    parser = EventStreamParser()
    events = [e for line in split_lines([text.encode()]) if (e := parser.feed(line)) is not None]
    return events, parser


def test_fields_comments_and_retry():
    events, parser = parse(": hello\r\nretry: 2500\r\n\r\nid: 5-0\r\nevent: tick\r\ndata: a\r\ndata:b\r\n\r\n"
                           "data: no id\n\n")
    assert events == [ServerSentEvent("a\nb", "tick", "5-0"), ServerSentEvent("no id", "message", None)]
    assert parser.retry_ms == 2500 and parser.comments == 1
    # An event without an id of its own keeps the last one, as a browser does.
    assert parser.last_event_id == "5-0"


def test_a_block_without_data_dispatches_nothing_and_lines_may_split_across_chunks():
    parser = EventStreamParser()
    chunks = [b"id: 1-0\n\n", b"da", b"ta: x\r", b"\n\r\n"]
    events = [e for line in split_lines(chunks) if (e := parser.feed(line)) is not None]
    assert events == [ServerSentEvent("x", "message", None)]
    assert parser.last_event_id == "1-0"
