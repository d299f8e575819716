"""A loopback server speaking enough of the OpenAI Chat Completions API for the real SDK.

Each test scripts its answers (`peer.script(Reply(...), ...)`): text to stream at a chosen token rate,
error statuses with headers, delays before answering, streams that hang until the client hangs up.
Every request is recorded, with whether (and when) the client closed the connection before the answer ended.
"""
from __future__ import annotations

import itertools
import json
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.peers.processes import ThreadedPeer

# A "token" of this peer: a word with the whitespace after it, or a run of whitespace.
_TOKEN = re.compile(r"\S+\s*|\s+")


def tokens_of(text: str) -> list[str]:
    """How the peer splits a text into streamed tokens (and counts completion tokens)."""
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Reply:
    """One scripted answer. A 2xx status streams (or returns) `text`; any other answers `error`."""

    text: str = ""
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds before the status line is sent.
    delay: float = 0.0
    # Pace of streamed tokens; None sends them as fast as possible.
    tokens_per_second: float | None = None
    # Stop after this many tokens and keep the connection open, silent, until the client closes it.
    hang_after: int | None = None
    finish_reason: str = "stop"
    # False: no usage chunk even when the client asks for one (as some servers do).
    usage: bool = True

    @classmethod
    def failure(cls, status: int, message: str, *, code: str | None = None, type: str = "invalid_request_error",
                headers: dict[str, str] | None = None) -> Reply:
        """An error answer shaped like OpenAI's: {"error": {"message", "type", "code"}}."""
        return cls(status=status, error={"message": message, "type": type, "code": code}, headers=headers or {})

    @classmethod
    def hang(cls, after_tokens: int = 0, text: str = "") -> Reply:
        """Send the headers (and `after_tokens` tokens of `text`), then nothing until the client leaves."""
        return cls(text=text, hang_after=after_tokens)


@dataclass
class RecordedRequest:
    """A request as the peer received it; header names are lowercased."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    # Set when the client closed the connection before the whole answer was sent.
    disconnected: threading.Event = field(default_factory=threading.Event)
    # Set when the peer is done with the request (answered in full, or the client left).
    finished: threading.Event = field(default_factory=threading.Event)
    # time.monotonic() when the request was read, when the peer saw the client leave, and when it was done with it.
    received_at: float = field(default_factory=time.monotonic)
    disconnected_at: float | None = None
    finished_at: float | None = None

    def mark_disconnected(self) -> None:
        """Record that the client closed the connection before the answer ended (first sighting only)."""
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
        self.disconnected.set()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def text(self) -> str:
        """All message contents of the request, joined."""
        return "\n".join(str(message.get("content", "")) for message in self.messages)


Responder = Callable[[RecordedRequest], Reply]


class OpenAIPeer(ThreadedPeer):
    """Start with `with OpenAIPeer() as peer:`; point the SDK at `peer.base_url` (ends in /v1)."""

    def __init__(self, *, models: tuple[str, ...] = ("peer-model",), api_key: str | None = None) -> None:
        self.models = list(models)
        # When set, requests must carry `Authorization: Bearer <api_key>`.
        self.api_key = api_key
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._script: deque[Reply | Responder] = deque()
        self._requests: list[RecordedRequest] = []
        super().__init__(_handler_for(self), "openai-peer")
        self.base_url = f"{self.url}/v1"

    def script(self, *replies: Reply | Responder) -> None:
        """Queue the answers to the next chat completion requests, in order."""
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted answers not used yet."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def completions(self) -> list[RecordedRequest]:
        """The chat completion requests received so far."""
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is None:
            return Reply.failure(500, "the test scripted no answer for this request", type="server_error")
        return scripted if isinstance(scripted, Reply) else scripted(request)

    def _refusal(self, request: RecordedRequest) -> Reply | None:
        """The answers a real server gives before any scripted one: a wrong key, an unknown model."""
        if self.api_key is not None:
            given = request.headers.get("authorization", "")
            if given != f"Bearer {self.api_key}":
                # Like OpenAI, echo what was presented: clients must not pass this on verbatim.
                presented = given.removeprefix("Bearer ") or "(none)"
                return Reply.failure(401, f"Incorrect API key provided: {presented}. You can find your API key "
                                          "in your account settings.", code="invalid_api_key")
        model = request.body.get("model")
        if request.path == "/v1/chat/completions" and model not in self.models:
            return Reply.failure(404, f"The model `{model}` does not exist or you do not have access to it.",
                                 code="model_not_found")
        return None


def _handler_for(peer: OpenAIPeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # One answer per connection, ended by closing it: streams need no chunked encoding.
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {"_unparsed": raw.decode("utf-8", "replace")}
            request = RecordedRequest(self.command, self.path.split("?", 1)[0],
                                      {k.lower(): v for k, v in self.headers.items()}, body)
            peer._record(request)
            try:
                self._answer(request)
            except (BrokenPipeError, ConnectionResetError):
                request.mark_disconnected()
            finally:
                request.finished_at = time.monotonic()
                request.finished.set()

        def _answer(self, request: RecordedRequest) -> None:
            refusal = peer._refusal(request)
            if request.method == "GET" and request.path == "/v1/models":
                if refusal is not None:
                    return self._json(refusal.status, {"error": refusal.error}, refusal.headers)
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "peer"} for m in peer.models]
                return self._json(200, {"object": "list", "data": data})
            if request.method != "POST" or request.path != "/v1/chat/completions":
                return self._json(404, {"error": {"message": f"no route {request.method} {request.path}",
                                                  "type": "invalid_request_error", "code": None}})
            reply = refusal or peer._next_reply(request)
            if reply.delay and self._wait(request, reply.delay):
                return
            if reply.status >= 300:
                return self._json(reply.status, {"error": reply.error or {"message": "error"}}, reply.headers)
            prompt_tokens = sum(len(str(m.get("content", ""))) for m in request.messages) // 4
            tokens = tokens_of(reply.text)
            if not request.body.get("stream"):
                return self._json(200, self._completion(request, reply, prompt_tokens, len(tokens)), reply.headers)
            self._stream(request, reply, prompt_tokens, tokens)

        def _stream(self, request: RecordedRequest, reply: Reply, prompt_tokens: int, tokens: list[str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            base = {"id": f"chatcmpl-peer{next(peer._ids)}", "object": "chat.completion.chunk",
                    "created": int(time.time()), "model": request.body.get("model")}
            self._event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]})
            pause = 1 / reply.tokens_per_second if reply.tokens_per_second else 0.0
            for index, token in enumerate(tokens):
                if reply.hang_after is not None and index >= reply.hang_after:
                    break
                if pause and self._wait(request, pause):
                    return
                self._event({**base, "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]})
            if reply.hang_after is not None:
                self._wait(request, None)
                return
            self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]})
            if reply.usage and (request.body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                         "total_tokens": prompt_tokens + len(tokens)}
                self._event({**base, "choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def _completion(self, request: RecordedRequest, reply: Reply, prompt_tokens: int,
                        completion_tokens: int) -> dict[str, Any]:
            return {"id": f"chatcmpl-peer{next(peer._ids)}", "object": "chat.completion", "created": int(time.time()),
                    "model": request.body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                                 "finish_reason": reply.finish_reason}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}}

        def _event(self, data: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
            self.wfile.flush()

        def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _wait(self, request: RecordedRequest, seconds: float | None) -> bool:
            """Wait `seconds` (None: for ever); True when the client hung up or the peer is stopping."""
            deadline = None if seconds is None else time.monotonic() + seconds
            while not peer._stopping.is_set():
                left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
                if left <= 0:
                    return False
                readable, _, _ = select.select([self.connection], [], [], left)
                if readable and self._client_left():
                    request.mark_disconnected()
                    return True
            return True

        def _client_left(self) -> bool:
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except (ConnectionResetError, OSError):
                return True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded on the peer

    return Handler
