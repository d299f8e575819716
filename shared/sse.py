"""Reading a server-sent event stream: a line parser after the WHATWG rules, and a follower.

The follower is what `devora jobs watch` uses: it reconnects with `Last-Event-ID` after a
dropped connection, waiting the server's `retry:` hint, and raises StreamUnavailable when
the stream cannot be reached or refuses it, so the caller can fall back to polling.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class ServerSentEvent:
    """A dispatched event; `id` is the id field of this event's own block (None when it had none)."""

    data: str
    event: str = "message"
    id: str | None = None


class EventStreamParser:
    """Feed it the stream's lines; it returns each event as its block ends."""

    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self.comments = 0
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        line = line.removesuffix("\r")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event, own_id = self._data, self._event, self._id
        self._data, self._event, self._id = [], "", None
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event or "message", id=own_id)


def split_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of a byte stream, without their LF or CRLF endings."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r").decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


class StreamUnavailable(Exception):
    """The stream could not be reached, or answered something other than an event stream."""


def follow(url: str, params: Callable[[], dict[str, str]], *, last_event_id: str = "", connect_timeout: float = 3.0,
           read_timeout: float = 45.0, attempts: int = 3) -> Iterator[ServerSentEvent]:
    """The stream's events, across reconnections; ends only when the caller stops iterating.

    `params` gives each connection's query (so a short-lived token can be fresh). A connection that drops is reopened with the last id seen; `attempts` failures in a
    row to open one raise StreamUnavailable, and so does any answer but 200 event-stream.
    """
    parser = EventStreamParser(last_event_id)
    failures = 0
    while True:
        headers = {"Accept": "text/event-stream"}
        if parser.last_event_id:
            headers["Last-Event-ID"] = parser.last_event_id
        try:
            response = requests.get(url, params=params(), headers=headers, stream=True,
                                    timeout=(connect_timeout, read_timeout))
        except requests.RequestException as error:
            failures += 1
            if failures >= attempts:
                raise StreamUnavailable(f"cannot reach {url}: {type(error).__name__}") from None
            time.sleep((parser.retry_ms or 1000) / 1000)
            continue
        with response:
            if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith(
                    "text/event-stream"):
                raise StreamUnavailable(f"{url} answered {response.status_code} {_problem_title(response)}")
            failures = 0
            try:
                for line in split_lines(response.iter_content(chunk_size=None)):
                    event = parser.feed(line)
                    if event is not None:
                        yield event
            except requests.RequestException:
                pass  # dropped or silent for too long: reconnect from the last id
        time.sleep((parser.retry_ms or 1000) / 1000)


def _problem_title(response: requests.Response) -> str:
    try:
        return str(response.json().get("title", ""))
    except ValueError:
        return ""
