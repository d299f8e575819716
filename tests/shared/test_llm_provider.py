"""The language-model provider through the whole pipeline, against the scripted peer and the real SDK.

The "model" answers with a correct implementation taken from the embedded renderer for the same spec
(tests, README and .gitignore left out), or with a copy broken on purpose; validation runs the
project's rendered tests for real.
"""
from __future__ import annotations

import json

import pytest

from shared.generator import (
    GenerationCanceled,
    GenerationFailed,
    LLMProvider,
    PlanInvalid,
    ProviderRejected,
    ProviderUnavailable,
    TokenBudgetExceeded,
    get_provider,
    render,
    run_pipeline,
)
from shared.schemas.spec import AppSpec
from tests.llm_helpers import BOOKSHOP, BOOKSHOP_PROMPT, broken, files_answer, implementation, spec_answer
from tests.peers.openai_fixtures import LLM_TEST_KEY
from tests.peers.openai_peer import Reply, tokens_of

SPEC = AppSpec.model_validate(BOOKSHOP)
RENDERED = render(SPEC, "agentic")
BROKEN_STATUS = ("bookshop/app.py", "HTTPStatus.CREATED", "HTTPStatus.OK")


def peer_prompt_tokens(request) -> int:
    # The peer counts a quarter token per character of the message contents (no separators).
    return sum(len(str(message.get("content", ""))) for message in request.messages) // 4


def test_a_prompt_alone_is_planned_written_validated_and_passes(openai_peer, llm_settings):
    plan_text, code_text = spec_answer(), files_answer(implementation())
    openai_peer.script(Reply(plan_text), Reply(code_text))
    updates, files_seen = [], []
    result = run_pipeline(None, "agentic", prompt=BOOKSHOP_PROMPT, provider=get_provider("llm", llm_settings()),
                          on_update=updates.append, on_file=lambda path, action: files_seen.append((path, action)))

    summary = result.summary
    assert summary.validation_passed and summary.tests_run > 0 and summary.repair_attempts == 0
    assert summary.provider == "llm" and summary.app_name == "bookshop" and result.spec == SPEC
    # Our rendered tests, README and .gitignore; the model's implementation.
    for path in ("tests/test_api.py", "tests/__init__.py", "README.md", ".gitignore"):
        assert result.files[path] == RENDERED[path]
    assert result.files["bookshop/app.py"] == RENDERED["bookshop/app.py"]

    plan_request, code_request = openai_peer.completions
    assert BOOKSHOP_PROMPT in plan_request.text
    assert plan_request.body["response_format"]["type"] == "json_schema"
    assert plan_request.body["response_format"]["json_schema"]["schema"]["title"] == "AppSpec"
    assert RENDERED["tests/test_api.py"] in code_request.text, "the model sees the tests it must pass"
    assert "response_format" not in code_request.body

    # Token usage per stage is what the server reported.
    assert summary.usage == {
        "plan": {"prompt_tokens": peer_prompt_tokens(plan_request), "completion_tokens": len(tokens_of(plan_text))},
        "generate": {"prompt_tokens": peer_prompt_tokens(code_request),
                     "completion_tokens": len(tokens_of(code_text))},
    }
    assert summary.total_tokens == sum(sum(stage.values()) for stage in summary.usage.values())
    assert summary.to_dict()["usage"] == summary.usage

    stages = [update.stage for update in updates]
    assert stages[0] == "plan" and stages[-1] == "done" and "validate" in stages
    details = [update.detail for update in updates if update.stage == "generate" and update.detail]
    assert any(detail.startswith("writing bookshop/") for detail in details), details
    tokens = [update.tokens for update in updates]
    assert tokens == sorted(tokens) and tokens[-1] == summary.total_tokens

    # The model's files are started as its answer reaches them, before any file is complete;
    # the rendered ones are started and generated together once the answer is in.
    written_by_model = [(path, "started") for path in implementation()]
    assert files_seen[:len(written_by_model)] == written_by_model
    assert files_seen.count((".gitignore", "started")) == 1
    assert files_seen.index((".gitignore", "started")) + 1 == files_seen.index((".gitignore", "generated"))
    assert sorted(path for path, action in files_seen if action == "generated") == sorted(result.files)
    assert all(action != "dropped" for _, action in files_seen)


def test_a_file_is_announced_started_while_the_model_is_still_writing_it(openai_peer, llm_settings):
    first = "bookshop/app.py"
    code = files_answer({first: implementation()[first], **implementation()})
    # The model writes at a model's pace, then stops (and hangs) at the end of its first file.
    hang_at = len(tokens_of(code[:code.index("=== END FILE ===")]))
    openai_peer.script(Reply(code, hang_after=hang_at, tokens_per_second=400))
    files_seen = []
    with pytest.raises(GenerationCanceled, match="during the generate stage"):
        run_pipeline(BOOKSHOP, "agentic", provider=LLMProvider(llm_settings(llm_timeout_seconds=30)),
                     on_file=lambda path, action: files_seen.append((path, action)),
                     should_cancel=lambda: bool(files_seen))
    assert files_seen == [(first, "started")], "told while the call was still streaming, and nothing more"
    assert openai_peer.completions[0].disconnected.wait(10)


def test_an_invalid_plan_goes_back_with_its_errors_and_the_corrected_one_is_used(openai_peer, llm_settings):
    wrong = json.loads(json.dumps(BOOKSHOP))
    wrong["entities"][0]["name"] = "author"
    wrong["entities"][1]["fields"].append({"name": "id", "type": "integer"})
    first = spec_answer(wrong)
    openai_peer.script(Reply(first), Reply(json.dumps(BOOKSHOP)), Reply(files_answer(implementation())))
    result = run_pipeline(None, "agentic", prompt=BOOKSHOP_PROMPT, provider=LLMProvider(llm_settings()))

    assert result.summary.validation_passed and result.spec == SPEC
    retry = openai_peer.completions[1]
    assert retry.messages[-2] == {"role": "assistant", "content": first}
    feedback = retry.messages[-1]["content"]
    assert feedback.startswith("That answer is not a valid spec:")
    assert "entities.0.name: invalid entity name 'author'" in feedback
    assert "'id' is reserved" in feedback
    plan_usage = result.summary.usage["plan"]
    assert plan_usage["completion_tokens"] == len(tokens_of(first)) + len(tokens_of(json.dumps(BOOKSHOP)))


def test_a_plan_still_invalid_after_every_attempt_fails_clearly(openai_peer, llm_settings):
    openai_peer.script(Reply("I cannot decide on a name."), Reply('{"app_name": "json", "entities": []}'))
    with pytest.raises(PlanInvalid) as caught:
        run_pipeline(None, "agentic", prompt=BOOKSHOP_PROMPT,
                     provider=LLMProvider(llm_settings(llm_max_plan_attempts=2)))
    message = str(caught.value)
    assert message.startswith("the model did not produce a valid spec in 2 attempt(s):")
    assert "clashes with the Python standard library" in message and "at least one entity" in message
    assert len(openai_peer.completions) == 2 and openai_peer.pending == 0
    assert caught.value.usage["plan"]["completion_tokens"] > 0


def test_a_spec_sent_with_the_prompt_constrains_the_plan(openai_peer, llm_settings):
    renamed = {**BOOKSHOP, "app_name": "library"}
    extended = json.loads(json.dumps(BOOKSHOP))
    extended["entities"].append({"name": "Shelf", "fields": [{"name": "label", "type": "string"}]})
    openai_peer.script(Reply(spec_answer(renamed)), Reply(spec_answer(extended)),
                       Reply(files_answer(implementation(extended))))
    result = run_pipeline(BOOKSHOP, "agentic", prompt="also shelves", provider=LLMProvider(llm_settings()))

    assert [entity.name for entity in result.spec.entities] == ["Author", "Book", "Shelf"]
    assert result.summary.validation_passed
    first, retry = openai_peer.completions[:2]
    assert json.dumps(SPEC.model_dump(mode="json"), indent=1) in first.text
    assert "app_name must stay 'bookshop'" in retry.messages[-1]["content"]


def test_a_spec_without_a_prompt_is_not_planned_by_the_model(openai_peer, llm_settings):
    openai_peer.script(Reply(files_answer(implementation(), fenced=False)))
    result = run_pipeline(BOOKSHOP, "agentic", provider=LLMProvider(llm_settings()))
    assert result.summary.validation_passed and list(result.summary.usage) == ["generate"]
    assert len(openai_peer.completions) == 1


def test_a_web_page_project_gets_its_static_files_from_the_model(openai_peer, llm_settings):
    files = implementation(kind="fullstack")
    assert "static/app.js" in files
    openai_peer.script(Reply(files_answer(files)))
    result = run_pipeline(BOOKSHOP, "fullstack", provider=LLMProvider(llm_settings()))
    assert result.summary.validation_passed and result.files["static/app.js"] == files["static/app.js"]
    assert "`bookshop/` and `static/`" in openai_peer.completions[0].messages[0]["content"]


def test_failing_tests_go_back_to_the_model_and_the_repair_passes(openai_peer, llm_settings):
    good = implementation()
    bad = broken(good, *BROKEN_STATUS)
    fixed_app = {"bookshop/app.py": good["bookshop/app.py"]}
    openai_peer.script(Reply(files_answer(bad)), Reply(files_answer(fixed_app)))
    result = run_pipeline(BOOKSHOP, "agentic", provider=LLMProvider(llm_settings()), max_repairs=2)

    assert result.summary.validation_passed and result.summary.repair_attempts == 1
    assert result.files["bookshop/app.py"] == good["bookshop/app.py"]
    assert result.files["bookshop/store.py"] == good["bookshop/store.py"], "unchanged files are kept"
    repair = openai_peer.completions[1].text
    assert "Validation failed: tests failed" in repair and "AssertionError: 200 != 201" in repair
    assert "HTTPStatus.OK, self._write(store.create_record" in repair, "the current files go back"
    assert set(result.summary.usage) == {"generate", "repair"}


def test_exhausted_repairs_fail_with_the_last_validation_failure(openai_peer, llm_settings):
    bad = broken(implementation(), *BROKEN_STATUS)
    openai_peer.script(Reply(files_answer(bad)), Reply(files_answer({"bookshop/app.py": bad["bookshop/app.py"]})))
    with pytest.raises(GenerationFailed) as caught:
        run_pipeline(BOOKSHOP, "agentic", provider=LLMProvider(llm_settings()), max_repairs=1)
    failure = caught.value
    assert failure.repair_attempts == 1 and not failure.report.passed and failure.report.tests_ran
    assert "AssertionError: 200 != 201" in failure.report.output_tail
    assert str(failure).startswith("the generated project failed validation after 1 repair attempt(s): tests failed")
    assert set(failure.usage) == {"generate", "repair"}


def test_the_model_cannot_replace_the_rendered_tests(openai_peer, llm_settings):
    # A broken implementation that brings its own always-passing tests, and a root module
    # shadowing the standard library's unittest: neither is written, so the real tests fail.
    fake_tests = "import unittest\n\n\nclass Passes(unittest.TestCase):\n    def test_ok(self):\n        pass\n"
    bad = broken(implementation(), *BROKEN_STATUS)
    answer = {**bad, "tests/test_api.py": fake_tests, "tests/test_more.py": fake_tests, "README.md": "# mine\n",
              "unittest.py": "raise SystemExit(0)\n"}
    fixed = {"bookshop/app.py": implementation()["bookshop/app.py"]}
    openai_peer.script(Reply(files_answer(answer)), Reply(files_answer(fixed)))
    files_seen = []
    result = run_pipeline(BOOKSHOP, "agentic", provider=LLMProvider(llm_settings()), max_repairs=1,
                          on_file=lambda path, action: files_seen.append((path, action)))

    assert result.summary.repair_attempts == 1, "the first round failed: the fake tests were not run"
    assert not {"unittest.py", "tests/test_more.py"} & {path for path, _ in files_seen}, \
        "a file the project can never take is not announced as started"
    assert result.files["tests/test_api.py"] == RENDERED["tests/test_api.py"]
    assert result.files["README.md"] == RENDERED["README.md"]
    assert "unittest.py" not in result.files and "tests/test_more.py" not in result.files
    repair = openai_peer.completions[1].text
    assert "'tests/test_api.py' was refused: the tests and README come from the spec" in repair
    assert "'unittest.py' was refused: files may only be written under bookshop/" in repair


def test_paths_escaping_the_project_are_refused_not_written(openai_peer, llm_settings):
    bad = broken(implementation(), *BROKEN_STATUS)
    escapes = {"../evil.py": "x = 1\n", "/etc/evil.py": "x = 1\n", "bookshop/../../evil.py": "x = 1\n",
               "bookshop\\win.py": "x = 1\n"}
    openai_peer.script(Reply(files_answer({**bad, **escapes})),
                       Reply(files_answer({"bookshop/app.py": implementation()["bookshop/app.py"]})))
    result = run_pipeline(BOOKSHOP, "agentic", provider=LLMProvider(llm_settings()), max_repairs=1)

    assert result.summary.validation_passed
    assert not any("evil" in path or "win" in path for path in result.files)
    assert all(path.startswith(("bookshop/", "tests/", "README.md", ".gitignore")) for path in result.files)
    repair = openai_peer.completions[1].text
    assert "'../evil.py' was refused: invalid file path: it contains a '..' segment" in repair
    assert "'/etc/evil.py' was refused: invalid file path: it must be relative" in repair
    assert "'bookshop/../../evil.py' was refused" in repair and "'bookshop\\\\win.py' was refused" in repair


def test_oversized_files_are_refused(openai_peer, llm_settings):
    good = implementation()
    huge = {**good, "bookshop/blob.py": "x = 1\n" * 5000}
    openai_peer.script(Reply(files_answer(huge)))
    files_seen = []
    result = run_pipeline(BOOKSHOP, "agentic", provider=LLMProvider(llm_settings(max_file_bytes=20000)),
                          max_repairs=0, on_file=lambda path, action: files_seen.append((path, action)))
    assert "bookshop/blob.py" not in result.files and result.summary.validation_passed
    assert [action for path, action in files_seen if path == "bookshop/blob.py"] == ["started", "dropped"], \
        "started while the model wrote it, dropped when the project refused it"


@pytest.mark.parametrize(("reply", "error", "fragment"), [
    (Reply.failure(429, "Slow down", headers={"Retry-After": "12"}), ProviderUnavailable, "rate limiting"),
    (Reply.failure(503, "Overloaded", type="server_error"), ProviderUnavailable, r"failed \(503\)"),
    (Reply.failure(400, "This model's maximum context length is 8192 tokens", code="context_length_exceeded"),
     ProviderRejected, "context window"),
    (Reply("too late", delay=30), ProviderUnavailable, "did not answer within 0.5 s"),
], ids=["429", "503", "context", "timeout"])
def test_model_failures_become_transient_or_permanent_pipeline_errors(openai_peer, llm_settings, reply, error,
                                                                     fragment):
    openai_peer.script(reply)
    with pytest.raises(error, match=fragment) as caught:
        run_pipeline(None, "agentic", prompt=BOOKSHOP_PROMPT,
                     provider=LLMProvider(llm_settings(llm_timeout_seconds=0.5)))
    if isinstance(caught.value, ProviderUnavailable) and "429" in str(caught.value):
        assert caught.value.retry_after == 12


def test_a_wrong_key_fails_for_good_and_the_error_holds_no_key(openai_peer, llm_settings):
    wrong = "sk-live-wrong-9876543210fedcba"
    with pytest.raises(ProviderRejected) as caught:
        run_pipeline(None, "agentic", prompt=BOOKSHOP_PROMPT, provider=LLMProvider(llm_settings(llm_api_key=wrong)))
    assert caught.value.reason == "authentication"
    text = str(caught.value) + repr(caught.value.args) + json.dumps(caught.value.usage)
    assert wrong not in text and LLM_TEST_KEY not in text and "sk-" not in text


def test_an_unknown_model_fails_for_good(openai_peer, llm_settings):
    with pytest.raises(ProviderRejected, match="does not know the model 'gpt-nope'") as caught:
        run_pipeline(BOOKSHOP, "agentic", provider=LLMProvider(llm_settings(llm_model="gpt-nope")))
    assert caught.value.reason == "model_not_found"


def test_cancel_while_the_model_writes_stops_the_call(openai_peer, llm_settings):
    openai_peer.script(Reply.hang(after_tokens=40, text=files_answer(implementation())))
    writing = []

    def on_update(update):
        if update.stage == "generate" and update.tokens:
            writing.append(update)

    with pytest.raises(GenerationCanceled, match="canceled during the generate stage") as caught:
        run_pipeline(BOOKSHOP, "agentic", provider=LLMProvider(llm_settings(llm_timeout_seconds=300)),
                     on_update=on_update, should_cancel=lambda: bool(writing))
    assert caught.value.stage == "generate"
    assert openai_peer.completions[0].disconnected.wait(10), "the peer sees the connection closed"
    assert caught.value.usage["generate"]["completion_tokens"] >= 40


def test_the_job_token_cap_stops_the_run_mid_job(openai_peer, llm_settings):
    # The plan fits; the implementation's prompt and answer push the job past its cap mid-stream.
    openai_peer.script(Reply(spec_answer()), Reply(files_answer(implementation()), tokens_per_second=500))
    provider = LLMProvider(llm_settings(llm_max_job_tokens=3000))
    with pytest.raises(TokenBudgetExceeded, match="more than the 3000 one job may use") as caught:
        run_pipeline(None, "agentic", prompt=BOOKSHOP_PROMPT, provider=provider)
    error = caught.value
    assert error.cap == 3000 and error.used > 3000
    assert set(error.usage) == {"plan", "generate"}
    assert sum(sum(stage.values()) for stage in error.usage.values()) == error.used
    assert openai_peer.completions[1].disconnected.wait(10), "the stream was cut, not read to its end"


def test_a_server_refusing_json_schema_gets_json_object_then_nothing(openai_peer, llm_settings):
    refusal = Reply.failure(400, "response_format type json_schema is not supported")
    openai_peer.script(refusal, Reply.failure(400, "response_format json_object is unavailable"),
                       Reply(spec_answer()), Reply(files_answer(implementation())))
    result = run_pipeline(None, "agentic", prompt=BOOKSHOP_PROMPT, provider=LLMProvider(llm_settings()))
    assert result.summary.validation_passed
    formats = [request.body.get("response_format", {}).get("type") for request in openai_peer.completions[:3]]
    assert formats == ["json_schema", "json_object", None]


def test_an_explicit_structured_output_mode_is_not_second_guessed(openai_peer, llm_settings):
    openai_peer.script(Reply.failure(400, "response_format type json_schema is not supported"))
    with pytest.raises(ProviderRejected) as caught:
        run_pipeline(None, "agentic", prompt=BOOKSHOP_PROMPT,
                     provider=LLMProvider(llm_settings(llm_structured_output="json_schema")))
    assert caught.value.reason == "response_format_unsupported" and len(openai_peer.completions) == 1


def test_the_llm_provider_needs_settings():
    with pytest.raises(ValueError, match="built from settings"):
        get_provider("llm")
