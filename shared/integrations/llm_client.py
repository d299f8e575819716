"""Chat completions from an OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM).

Through the official `openai` SDK, always streamed with token usage requested in the stream. The
SDK's own retries are off (`max_retries=0`) on purpose: the generation job retries transient
failures with its backoff, and retrying in both places would multiply the attempts.

A call runs on a short-lived asyncio loop in the caller's thread, so every callback (progress,
cancel) runs in that thread too. The stream is read by a task while the caller's cancel check is
polled every CANCEL_POLL_SECONDS; a cancel closes the connection at once, even while the server is
silent (a blocking read could only be left at the read timeout).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai

from shared.settings import Settings

logger = logging.getLogger(__name__)

CANCEL_POLL_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 10.0
SERVER_MESSAGE_CHARS = 300

Message = Mapping[str, str]
# (tokens of the call so far, prompt included; the text so far)
ProgressHook = Callable[[int, str], None]
CancelHook = Callable[[], bool]

_CONTEXT_OVERFLOW = re.compile(
    r"context[ _](length|size|window)|maximum context|too many tokens|prompt is too long|exceeds the available context",
    re.IGNORECASE)
_RESPONSE_FORMAT = re.compile(r"response_format|json_schema|json_object|structured output", re.IGNORECASE)
_KEY_LIKE = re.compile(r"\b(?:sk|rk|pk)-[\w*.\-]{3,}|Bearer\s+\S+", re.IGNORECASE)
# Headers the SDK would otherwise fill from OPENAI_* environment variables: settings are the only source.
_NO_AMBIENT_HEADERS = {"OpenAI-Organization": openai.omit, "OpenAI-Project": openai.omit}


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for servers that report no usage."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class Completion:
    """A finished call: its text, token usage, and why the model stopped ("stop", "length", ...)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    # False when the server sent no usage chunk and the counts are estimates.
    usage_reported: bool

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LLMError(Exception):
    """A call that did not complete; `prompt_tokens`/`completion_tokens` estimate what it consumed."""

    def __init__(self, message: str, *, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


class LLMUnavailable(LLMError):
    """Rate limited, a server error, a timeout or no connection: worth trying again later."""

    def __init__(self, message: str, *, retry_after: float | None = None, **usage: int) -> None:
        super().__init__(message, **usage)
        self.retry_after = retry_after


class LLMRejected(LLMError):
    """The server refused the request for good; `reason` says why in a word."""

    def __init__(self, message: str, *, reason: str, **usage: int) -> None:
        super().__init__(message, **usage)
        self.reason = reason


class LLMCanceled(LLMError):
    """The caller's cancel check asked to stop; the stream was closed."""


class LLMBudgetExceeded(LLMError):
    """The call consumed more tokens than it was allowed; the stream was closed."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Building the default TLS context costs tens of milliseconds; one per process is enough,
    # while each call gets its own HTTP client bound to its own event loop.
    return httpx2.create_ssl_context()


class _Call:
    """The state of one streamed call: text so far, token counts, progress pacing, budget."""

    def __init__(self, prompt_tokens: int, budget: int | None, on_progress: ProgressHook | None,
                 interval: float) -> None:
        self.parts: list[str] = []
        self.chars = 0
        self.chunks = 0
        self.prompt_estimate = prompt_tokens
        self.usage: tuple[int, int] | None = None
        self.finish_reason: str | None = None
        self._budget = budget
        self._on_progress = on_progress
        self._interval = interval
        self._last_report: float | None = None

    @property
    def completion_estimate(self) -> int:
        # Servers stream one token a chunk, so while the text flows the count of chunks is the
        # count of tokens; the usage chunk at the end replaces it.
        return self.usage[1] if self.usage is not None else self.chunks

    def usage_so_far(self) -> dict[str, int]:
        if self.usage is not None:
            return {"prompt_tokens": self.usage[0], "completion_tokens": self.usage[1]}
        return {"prompt_tokens": self.prompt_estimate, "completion_tokens": self.completion_estimate}

    def take(self, chunk: Any) -> None:
        if chunk.usage is not None:
            self.usage = (chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
        for choice in chunk.choices or ():
            content = choice.delta.content if choice.delta is not None else None
            if content:
                self.chunks += 1
                self.parts.append(content)
                self.chars += len(content)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        self.check_budget()
        now = time.monotonic()
        if self.chars and (self._last_report is None or now - self._last_report >= self._interval):
            self.report(now)

    def check_budget(self) -> None:
        used = sum(self.usage_so_far().values())
        if self._budget is not None and used > self._budget:
            raise LLMBudgetExceeded(f"the call used about {used} tokens, more than the {self._budget} left to the job",
                                    **self.usage_so_far())

    def report(self, now: float | None = None) -> None:
        if self._on_progress is not None:
            self._last_report = time.monotonic() if now is None else now
            self._on_progress(sum(self.usage_so_far().values()), "".join(self.parts))

    def result(self) -> Completion:
        usage = self.usage
        if usage is None:
            logger.info("the model server sent no token usage; counting an estimate")
        # Without usage from the server, a server that batched tokens into chunks is still counted
        # at about four characters a token.
        prompt, completion = usage or (self.prompt_estimate, max(self.chunks, (self.chars + 3) // 4))
        return Completion("".join(self.parts), prompt, completion, self.finish_reason, usage is not None)


class LLMClient:
    """Streaming chat completions against LLM_BASE_URL / LLM_MODEL, built from settings."""

    def __init__(self, settings: Settings) -> None:
        if not settings.llm_base_url or not settings.llm_model:
            raise ValueError("the llm provider needs LLM_BASE_URL and LLM_MODEL")
        self.base_url = settings.llm_base_url
        self.model = settings.llm_model
        self._key = settings.llm_api_key
        self._timeout = httpx2.Timeout(settings.llm_timeout_seconds,
                                       connect=min(CONNECT_TIMEOUT_SECONDS, settings.llm_timeout_seconds))
        self._timeout_seconds = settings.llm_timeout_seconds
        self._max_output_tokens = settings.llm_max_output_tokens
        self._limit_parameter = settings.llm_token_limit_parameter
        self._temperature = settings.llm_temperature
        self._extra_body = dict(settings.llm_extra_body)
        self._retry_after_cap = settings.llm_retry_after_cap_seconds
        self._progress_interval = settings.llm_progress_interval_seconds
        self._host = urlsplit(self.base_url).netloc or self.base_url

    def complete(self, messages: Sequence[Message], *, response_format: Mapping[str, Any] | None = None,
                 token_budget: int | None = None, on_progress: ProgressHook | None = None,
                 should_cancel: CancelHook | None = None) -> Completion:
        """Stream one chat completion; `on_progress(call_tokens_so_far, text_so_far)` is paced, not per token.

        Raises LLMUnavailable, LLMRejected, LLMCanceled or LLMBudgetExceeded (`token_budget` is the
        number of tokens, prompt included, this call may use).
        """
        prompt_estimate = estimate_tokens("".join(message["content"] for message in messages))
        call = _Call(prompt_estimate, token_budget, on_progress, self._progress_interval)
        request: dict[str, Any] = {
            "model": self.model, "messages": [dict(message) for message in messages], "stream": True,
            "stream_options": {"include_usage": True}, self._limit_parameter: self._max_output_tokens,
        }
        if response_format is not None:
            request["response_format"] = dict(response_format)
        if self._temperature is not None:
            request["temperature"] = self._temperature
        if self._extra_body:
            request["extra_body"] = self._extra_body
        return asyncio.run(self._supervise(self._stream(request, call), call, should_cancel))

    def list_models(self) -> list[str]:
        """The model ids the server offers (GET /models)."""

        async def fetch() -> list[str]:
            async with self._sdk() as client:
                try:
                    page = await client.models.list(extra_headers=self._headers())
                except openai.OpenAIError as error:
                    raise self._classify(error, {}) from None
                return [model.id async for model in page]

        return asyncio.run(fetch())

    def _sdk(self) -> openai.AsyncOpenAI:
        key = self._key.get_secret_value()
        # Without a key (local servers) the SDK still wants one to construct; the Authorization
        # header is then omitted on every request (see _headers), so the placeholder is never sent.
        return openai.AsyncOpenAI(
            api_key=key or "no-key-configured", base_url=self.base_url, timeout=self._timeout, max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=_tls_context(), timeout=self._timeout))

    def _headers(self) -> dict[str, Any]:
        if self._key.get_secret_value():
            return dict(_NO_AMBIENT_HEADERS)
        return {**_NO_AMBIENT_HEADERS, "Authorization": openai.omit}

    async def _stream(self, request: dict[str, Any], call: _Call) -> Completion:
        async with self._sdk() as client:
            try:
                stream = await client.chat.completions.create(**request, extra_headers=self._headers())
                async with stream:
                    async for chunk in stream:
                        call.take(chunk)
            except openai.OpenAIError as error:
                raise self._classify(error, call.usage_so_far(), "response_format" in request) from None
        call.check_budget()
        call.report()
        return call.result()

    async def _supervise(self, work: Any, call: _Call, should_cancel: CancelHook | None) -> Completion:
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=CANCEL_POLL_SECONDS)
                if done:
                    return task.result()
                if should_cancel is not None and should_cancel():
                    raise LLMCanceled("the model call was canceled", **call.usage_so_far())
        finally:
            if not task.done():
                # Cancelling the reader closes the response and its connection, which the server sees.
                task.cancel()
                await asyncio.wait({task})

    def _classify(self, error: openai.OpenAIError, usage: dict[str, int], asked_format: bool = False) -> LLMError:
        if isinstance(error, openai.APITimeoutError):
            return LLMUnavailable(f"the model server at {self._host} did not answer within "
                                  f"{self._timeout_seconds:g} s (LLM_TIMEOUT_SECONDS)", **usage)
        if isinstance(error, openai.APIConnectionError):
            return LLMUnavailable(f"could not reach the model server at {self._host}", **usage)
        if not isinstance(error, openai.APIError):
            return LLMUnavailable(f"the model call failed: {type(error).__name__}", **usage)
        says = self._server_message(error)
        if not isinstance(error, openai.APIStatusError):
            # An error event inside an open stream.
            if _is_context_overflow(error, says):
                return LLMRejected(f"the request is longer than the model's context window: {says}",
                                   reason="context_length_exceeded", **usage)
            return LLMUnavailable(f"the model server failed while streaming: {says}", **usage)
        status = error.status_code
        retry_after = _retry_after(error.response.headers, self._retry_after_cap)
        if status == 429:
            return LLMUnavailable(f"the model server is rate limiting requests (429): {says}",
                                  retry_after=retry_after, **usage)
        if status >= 500 or status in (408, 409):
            return LLMUnavailable(f"the model server failed ({status}): {says}", retry_after=retry_after, **usage)
        if status == 401:
            return LLMRejected(f"the model server refused the API key (401); check LLM_API_KEY: {says}",
                               reason="authentication", **usage)
        if status == 403:
            return LLMRejected(f"the API key may not use the model {self.model!r} (403): {says}",
                               reason="permission", **usage)
        if status == 404:
            return LLMRejected(f"the model server at {self._host} does not know the model {self.model!r} (404); "
                               f"check LLM_MODEL and LLM_BASE_URL: {says}", reason="model_not_found", **usage)
        if _is_context_overflow(error, says):
            return LLMRejected(f"the request is longer than the model's context window ({status}): {says}",
                               reason="context_length_exceeded", **usage)
        if asked_format and _RESPONSE_FORMAT.search(says):
            return LLMRejected(f"the model server does not support this response_format ({status}): {says}",
                               reason="response_format_unsupported", **usage)
        return LLMRejected(f"the model server rejected the request ({status}): {says}", reason="bad_request",
                           **usage)

    def _server_message(self, error: openai.APIError) -> str:
        body = error.body
        if isinstance(body, Mapping):
            text = str(body.get("message") or body.get("detail") or body.get("error") or "no message")
        elif isinstance(body, str) and body.strip():
            text = body
        else:
            text = "no message"
        return self.redact(" ".join(text.split())[:SERVER_MESSAGE_CHARS])

    def redact(self, text: str) -> str:
        """`text` without the API key or anything shaped like one (servers echo keys in 401 messages)."""
        key = self._key.get_secret_value()
        if key:
            text = text.replace(key, "[redacted]")
        return _KEY_LIKE.sub("[redacted]", text)


def _is_context_overflow(error: openai.APIError, message: str) -> bool:
    codes = {str(error.code or ""), str(error.type or "")}
    return bool(codes & {"context_length_exceeded", "exceed_context_size_error"}) or bool(
        _CONTEXT_OVERFLOW.search(message))


def _retry_after(headers: httpx2.Headers, cap: float) -> float | None:
    """The wait the server asked for (Retry-After-Ms, Retry-After seconds or date), capped."""
    seconds: float | None = None
    try:
        if "retry-after-ms" in headers:
            seconds = float(headers["retry-after-ms"]) / 1000
        elif "retry-after" in headers:
            value = headers["retry-after"]
            try:
                seconds = float(value)
            except ValueError:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    if seconds is None or seconds != seconds:  # absent, or NaN
        return None
    return round(min(max(seconds, 0.0), cap), 3)
