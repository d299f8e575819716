"""The language-model client against a scripted OpenAI-compatible peer, through the real SDK."""
from __future__ import annotations

import pytest

from shared.integrations.llm_client import (
    LLMBudgetExceeded,
    LLMCanceled,
    LLMClient,
    LLMRejected,
    LLMUnavailable,
)
from tests.conftest import free_port
from tests.peers.openai_fixtures import LLM_TEST_KEY
from tests.peers.openai_peer import OpenAIPeer, Reply, tokens_of

HELLO = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Say hello."}]
LONG_TEXT = "word " * 300


def test_a_streamed_answer_comes_back_with_its_token_usage(openai_peer, llm_settings):
    openai_peer.script(Reply("Hello there, nice to meet you."))
    completion = LLMClient(llm_settings(llm_max_output_tokens=1234)).complete(HELLO)
    assert completion.text == "Hello there, nice to meet you."
    assert completion.finish_reason == "stop" and completion.usage_reported
    assert completion.completion_tokens == len(tokens_of(completion.text))
    assert completion.prompt_tokens == (len(HELLO[0]["content"]) + len(HELLO[1]["content"])) // 4
    body = openai_peer.completions[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "peer-model" and body["max_tokens"] == 1234 and body["messages"] == HELLO


def test_the_token_limit_parameter_and_extra_body_are_sent_as_configured(openai_peer, llm_settings):
    openai_peer.script(Reply("ok"))
    settings = llm_settings(llm_token_limit_parameter="max_completion_tokens", llm_max_output_tokens=999,
                            llm_temperature=0.2, llm_extra_body={"top_k": 20})
    LLMClient(settings).complete(HELLO)
    body = openai_peer.completions[0].body
    assert body["max_completion_tokens"] == 999 and "max_tokens" not in body
    assert body["temperature"] == 0.2 and body["top_k"] == 20


def test_progress_is_reported_at_a_bounded_rate_not_per_token(openai_peer, llm_settings):
    openai_peer.script(Reply(LONG_TEXT))
    reports: list[tuple[int, int]] = []
    client = LLMClient(llm_settings(llm_progress_interval_seconds=60))
    completion = client.complete(HELLO, on_progress=lambda tokens, text: reports.append((tokens, len(text))))
    # The first text, then nothing for a minute, then the final count.
    assert len(reports) == 2 < completion.completion_tokens == 300
    # The call's tokens, prompt included: estimated while streaming, as reported at the end.
    assert reports[0][0] < reports[-1][0] == completion.total_tokens
    assert reports[-1][1] == len(LONG_TEXT)


def test_a_server_without_usage_in_the_stream_gets_estimated_counts(openai_peer, llm_settings):
    openai_peer.script(Reply(LONG_TEXT, usage=False))
    completion = LLMClient(llm_settings()).complete(HELLO)
    assert not completion.usage_reported
    assert completion.completion_tokens >= 300 and completion.prompt_tokens > 0


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "7"}, 7.0),
    ({"Retry-After": "3600"}, 60.0),
    ({"retry-after-ms": "1500"}, 1.5),
    ({}, None),
])
def test_a_rate_limit_is_transient_and_carries_the_capped_retry_after(openai_peer, llm_settings, headers, expected):
    openai_peer.script(Reply.failure(429, "Rate limit reached for requests", code="rate_limit_exceeded",
                                     headers=headers))
    with pytest.raises(LLMUnavailable) as caught:
        LLMClient(llm_settings(llm_retry_after_cap_seconds=60)).complete(HELLO)
    assert caught.value.retry_after == expected
    assert "429" in str(caught.value) and "Rate limit reached" in str(caught.value)
    assert len(openai_peer.completions) == 1, "the SDK must not retry by itself: the job does"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient_and_not_retried_by_the_sdk(openai_peer, llm_settings, status):
    openai_peer.script(Reply.failure(status, "The server had an error", type="server_error"))
    with pytest.raises(LLMUnavailable, match=f"failed \\({status}\\)"):
        LLMClient(llm_settings()).complete(HELLO)
    assert len(openai_peer.completions) == 1


def test_a_wrong_key_is_refused_for_good_without_the_key_in_the_message(openai_peer, llm_settings):
    wrong = "sk-wrong-key-0123456789abcdef"
    with pytest.raises(LLMRejected) as caught:
        LLMClient(llm_settings(llm_api_key=wrong)).complete(HELLO)
    message = str(caught.value)
    assert caught.value.reason == "authentication" and "401" in message and "LLM_API_KEY" in message
    # The peer echoed the key in its message, as OpenAI does; none of it may be passed on.
    assert "Incorrect API key provided" in message
    assert wrong not in message and "sk-" not in message and "0123456789" not in message


def test_the_key_travels_only_in_the_authorization_header(openai_peer, llm_settings):
    openai_peer.script(Reply("hi"))
    settings = llm_settings(secret_key="s" * 40, stripe_api_key="sk_test_stripe_secret_value")
    LLMClient(settings).complete(HELLO)
    LLMClient(settings).list_models()
    for request in openai_peer.requests:
        assert request.headers["authorization"] == f"Bearer {LLM_TEST_KEY}"
        others = {name: value for name, value in request.headers.items() if name != "authorization"}
        recorded = repr(others) + repr(request.body)
        for secret in (LLM_TEST_KEY, "s" * 40, "sk_test_stripe_secret_value"):
            assert secret not in recorded
        assert "openai-organization" not in request.headers and "openai-project" not in request.headers


def test_without_a_key_no_authorization_header_is_sent(llm_settings):
    with OpenAIPeer(models=("peer-model",)) as keyless:
        keyless.script(Reply("hi"))
        completion = LLMClient(llm_settings(llm_base_url=keyless.base_url, llm_api_key="")).complete(HELLO)
        assert completion.text == "hi"
        assert "authorization" not in keyless.completions[0].headers


def test_an_unknown_model_is_refused_for_good(openai_peer, llm_settings):
    with pytest.raises(LLMRejected) as caught:
        LLMClient(llm_settings(llm_model="no-such-model")).complete(HELLO)
    assert caught.value.reason == "model_not_found"
    assert "'no-such-model'" in str(caught.value) and "LLM_MODEL" in str(caught.value)


def test_a_forbidden_model_is_refused_for_good(openai_peer, llm_settings):
    openai_peer.script(Reply.failure(403, "You are not allowed to sample from this model", code="model_forbidden"))
    with pytest.raises(LLMRejected) as caught:
        LLMClient(llm_settings()).complete(HELLO)
    assert caught.value.reason == "permission" and "403" in str(caught.value)


@pytest.mark.parametrize("reply", [
    Reply.failure(400, "This model's maximum context length is 8192 tokens. However, your messages resulted "
                       "in 9100 tokens.", code="context_length_exceeded"),
    Reply.failure(400, "the request exceeds the available context size, try increasing it",
                  type="exceed_context_size_error"),
    Reply.failure(400, "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
                       "(4000 in the messages, 1000 in the completion).", type="BadRequestError"),
], ids=["openai", "llama.cpp", "vllm"])
def test_context_length_exceeded_is_refused_for_good(openai_peer, llm_settings, reply):
    openai_peer.script(reply)
    with pytest.raises(LLMRejected) as caught:
        LLMClient(llm_settings()).complete(HELLO)
    assert caught.value.reason == "context_length_exceeded"
    assert "context window" in str(caught.value)


def test_a_refused_response_format_is_told_apart_from_other_bad_requests(openai_peer, llm_settings):
    openai_peer.script(Reply.failure(400, "response_format json_schema is not supported by this server"),
                       Reply.failure(400, "temperature must be at most 2"))
    client = LLMClient(llm_settings())
    with pytest.raises(LLMRejected) as caught:
        client.complete(HELLO, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}})
    assert caught.value.reason == "response_format_unsupported"
    with pytest.raises(LLMRejected) as caught:
        client.complete(HELLO)
    assert caught.value.reason == "bad_request" and "temperature must be at most 2" in str(caught.value)


def test_a_server_that_does_not_answer_in_time_is_transient(openai_peer, llm_settings):
    openai_peer.script(Reply("late", delay=30))
    with pytest.raises(LLMUnavailable, match="did not answer within 0.5 s"):
        LLMClient(llm_settings(llm_timeout_seconds=0.5)).complete(HELLO)


def test_a_stream_that_goes_silent_times_out(openai_peer, llm_settings):
    openai_peer.script(Reply.hang(after_tokens=3, text=LONG_TEXT))
    with pytest.raises(LLMUnavailable, match="did not answer within") as caught:
        LLMClient(llm_settings(llm_timeout_seconds=0.5)).complete(HELLO)
    assert caught.value.completion_tokens >= 3, "what streamed before the silence still counts"


def test_no_server_at_the_address_is_transient(llm_settings):
    settings = llm_settings(llm_base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(LLMUnavailable, match="could not reach the model server at 127.0.0.1"):
        LLMClient(settings).complete(HELLO)


def test_cancel_closes_a_silent_stream(openai_peer, llm_settings):
    # The server streams a little, then goes silent for longer than any test lasts: only the cancel
    # check, polled while the read waits, can end this call (the read timeout is 5 minutes).
    openai_peer.script(Reply.hang(after_tokens=5, text=LONG_TEXT))
    seen: list[int] = []
    checks_after_text: list[bool] = []

    def should_cancel() -> bool:
        if seen:
            checks_after_text.append(True)
        return bool(seen)

    client = LLMClient(llm_settings(llm_timeout_seconds=300))
    with pytest.raises(LLMCanceled) as caught:
        client.complete(HELLO, on_progress=lambda tokens, text: seen.append(tokens), should_cancel=should_cancel)
    assert checks_after_text and caught.value.completion_tokens >= 5
    request = openai_peer.completions[0]
    assert request.disconnected.wait(10), "the peer must see the connection closed"


def test_cancel_before_the_server_answers_closes_the_connection(openai_peer, llm_settings):
    openai_peer.script(Reply("never sent", delay=300))
    checks: list[int] = []

    def should_cancel() -> bool:
        checks.append(1)
        return len(checks) >= 2

    with pytest.raises(LLMCanceled):
        LLMClient(llm_settings(llm_timeout_seconds=300)).complete(HELLO, should_cancel=should_cancel)
    assert openai_peer.completions[0].disconnected.wait(10)


def test_a_call_past_its_token_budget_stops_mid_stream(openai_peer, llm_settings):
    openai_peer.script(Reply("token " * 2000, tokens_per_second=2000))
    with pytest.raises(LLMBudgetExceeded, match="more than the 100 left") as caught:
        LLMClient(llm_settings()).complete(HELLO, token_budget=100)
    assert 0 < caught.value.prompt_tokens + caught.value.completion_tokens <= 110
    assert openai_peer.completions[0].disconnected.wait(10), "the stream is closed, not read to its end"


def test_models_are_listed(openai_peer, llm_settings):
    assert LLMClient(llm_settings()).list_models() == ["peer-model"]


def test_redaction_removes_the_key_and_key_shaped_words(llm_settings):
    client = LLMClient(llm_settings())
    text = client.redact(f"key {LLM_TEST_KEY}, masked sk-abc***xyz, header Bearer abc.def")
    assert LLM_TEST_KEY not in text and "sk-abc" not in text and "abc.def" not in text
    assert text.count("[redacted]") == 3
