"""Generation jobs through the language-model provider: HTTP submission, a real worker, the scripted model peer.

The provider's own behaviour (parsing, prompts, error classes) is tested in tests/shared; these tests
prove the job around it: what is retried and what fails at once, what the job records (tokens,
progress, failure details), cancel, the budgets, and that a prompt alone ends as a working project.
"""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
import zipfile

import pytest
from sqlalchemy import event, text

from shared.schemas.spec import AppSpec
from tests.jobs_helpers import follow_job, new_project, wait_for_job
from tests.llm_helpers import BOOKSHOP, BOOKSHOP_PROMPT, broken, files_answer, implementation, spec_answer
from tests.peers.openai_fixtures import LLM_TEST_KEY, PEER_MODEL
from tests.peers.openai_peer import Reply, tokens_of
from worker.context import database_of

GOOD = implementation()
BAD = broken(GOOD, "bookshop/app.py", "HTTPStatus.CREATED", "HTTPStatus.OK")
WRONG_KEY = "sk-live-wrong-9876543210fedcba"


@pytest.fixture
def llm_overrides() -> dict:
    """Parametrize this in a test to change its settings."""
    return {}


@pytest.fixture
def settings_overrides(openai_peer, llm_overrides):
    return {"generation_provider": "llm", "llm_base_url": openai_peer.base_url, "llm_model": PEER_MODEL,
            "llm_api_key": LLM_TEST_KEY, "llm_timeout_seconds": 10, "llm_progress_interval_seconds": 0.05,
            "job_max_attempts": 2, "job_max_repairs": 1, **llm_overrides}


def with_settings(**values):
    return pytest.mark.parametrize("llm_overrides", [values], ids=["settings"])


def generate(client, headers, project_id, *, prompt=None, spec=None, kind="agentic"):
    body = {"project_id": project_id, **({"prompt": prompt} if prompt else {}), **({"spec": spec} if spec else {})}
    return client.post(f"/api/v2/generate/{kind}", json=body, headers=headers)


def start(client, headers, **request) -> tuple[str, str]:
    """A new project and a generation job for it; returns (project id, job id)."""
    project_id = new_project(client, headers)
    response = generate(client, headers, project_id, **request)
    assert response.status_code == 202, response.get_json()
    return project_id, response.get_json()["id"]


def project_paths(client, headers, project_id) -> set[str]:
    listed = client.get(f"/api/v2/projects/{project_id}/files", headers=headers).get_json()["items"]
    return {item["path"] for item in listed}


def test_a_prompt_alone_becomes_a_project_whose_tests_pass_from_the_archive(client, auth_headers, worker,
                                                                            celery_app, openai_peer, tmp_path):
    code = files_answer(GOOD)
    # Slow enough (about 1.5 s) for the polls to see the model writing.
    openai_peer.script(Reply(spec_answer()), Reply(code, tokens_per_second=1500))
    progress_writes = []

    def count_progress_writes(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE jobs SET") and "progress_detail" in statement:
            progress_writes.append(statement)

    engine = database_of(celery_app).engine
    event.listen(engine, "before_cursor_execute", count_progress_writes)
    try:
        project_id, job_id = start(client, auth_headers, prompt=BOOKSHOP_PROMPT)
        job, seen = follow_job(client, auth_headers, job_id)
    finally:
        event.remove(engine, "before_cursor_execute", count_progress_writes)

    assert job["status"] == "succeeded" and job["attempts"] == 1, job
    summary = job["result"]["summary"]
    assert summary["provider"] == "llm" and summary["validation_passed"] and summary["repair_attempts"] == 0
    assert job["result"]["spec"] == AppSpec.model_validate(BOOKSHOP).model_dump(mode="json"), "the planned spec"
    assert set(summary["usage"]) == {"plan", "generate"}
    assert job["usage"] == {"total_tokens": summary["total_tokens"], "stages": summary["usage"]}
    assert summary["usage"]["generate"]["completion_tokens"] == len(tokens_of(code))
    stage_seconds = job["result"]["stage_seconds"]
    assert set(stage_seconds) == {"plan", "generate", "validate"} and stage_seconds["generate"] >= 1.0, \
        "the implementation streamed for about 1.5 s"

    writing = [p for p in seen if p["stage"] == "generate" and (p["detail"] or "").startswith("writing bookshop/")]
    assert writing and writing[-1]["tokens"] > writing[0]["tokens"], seen
    tokens = [p["tokens"] for p in seen]
    assert tokens == sorted(tokens) and job["progress"]["tokens"] == summary["total_tokens"]
    # Paced by LLM_PROGRESS_INTERVAL_SECONDS (0.05 s here): a few dozen writes for thousands of tokens.
    assert 3 < len(progress_writes) < len(tokens_of(code)) / 20, len(progress_writes)

    assert project_paths(client, auth_headers, project_id) == set(job["result"]["files"])
    archive = client.get(f"/api/v2/projects/{project_id}/archive", headers=auth_headers)
    zipfile.ZipFile(io.BytesIO(archive.data)).extractall(tmp_path)
    run = subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
                         cwd=tmp_path / "target", capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "OK" in run.stderr, run.stderr[-3000:]


def test_an_invalid_plan_is_answered_with_its_errors_and_the_correction_is_built(client, auth_headers, worker,
                                                                                 openai_peer):
    wrong = json.loads(json.dumps(BOOKSHOP))
    wrong["entities"][0]["name"] = "author"
    first, second = spec_answer(wrong), json.dumps(BOOKSHOP)
    openai_peer.script(Reply(first), Reply(second), Reply(files_answer(GOOD)))
    _, job_id = start(client, auth_headers, prompt=BOOKSHOP_PROMPT)
    job = wait_for_job(client, auth_headers, job_id)

    assert job["status"] == "succeeded" and job["attempts"] == 1, job
    assert len(openai_peer.completions) == 3
    assert "invalid entity name 'author'" in openai_peer.completions[1].messages[-1]["content"]
    plan = job["usage"]["stages"]["plan"]
    assert plan["completion_tokens"] == len(tokens_of(first)) + len(tokens_of(second)), "both answers are charged"


def test_an_implementation_failing_its_tests_is_fixed_on_repair(client, auth_headers, worker, openai_peer):
    openai_peer.script(Reply(files_answer(BAD)), Reply(files_answer({"bookshop/app.py": GOOD["bookshop/app.py"]})))
    project_id, job_id = start(client, auth_headers, spec=BOOKSHOP)
    job = wait_for_job(client, auth_headers, job_id)

    assert job["status"] == "succeeded" and job["result"]["summary"]["repair_attempts"] == 1, job
    assert set(job["usage"]["stages"]) == {"generate", "repair"}
    assert set(job["result"]["stage_seconds"]) == {"plan", "generate", "validate", "repair"}
    app = client.get(f"/api/v2/projects/{project_id}/files/bookshop/app.py", headers=auth_headers).get_json()
    assert app["content"] == GOOD["bookshop/app.py"]


def test_exhausted_repairs_fail_the_job_with_the_last_failure_attached(client, auth_headers, worker, openai_peer):
    openai_peer.script(Reply(files_answer(BAD)), Reply(files_answer({"bookshop/app.py": BAD["bookshop/app.py"]})))
    project_id, job_id = start(client, auth_headers, spec=BOOKSHOP)
    job = wait_for_job(client, auth_headers, job_id)

    assert job["status"] == "failed" and job["attempts"] == 1, "a failed validation is not retried"
    error = job["error"]
    assert error["type"] == "GenerationFailed"
    assert error["message"].startswith("the generated project failed validation after 1 repair attempt(s)")
    assert error["details"]["repair_attempts"] == 1
    report = error["details"]["report"]
    assert not report["passed"] and report["tests_ran"] and "AssertionError: 200 != 201" in report["output_tail"]
    assert len(json.dumps(error["details"])) < 12000, "the attached failure is bounded"
    assert set(job["usage"]["stages"]) == {"generate", "repair"}, "a failed job is charged too"
    assert project_paths(client, auth_headers, project_id) == set()
    assert len(openai_peer.completions) == 2


def test_a_rate_limit_waits_its_retry_after_then_the_job_succeeds(client, auth_headers, worker, openai_peer):
    arrivals = []

    def timed(reply):
        def answer(request):
            arrivals.append(time.monotonic())
            return reply
        return answer

    openai_peer.script(timed(Reply.failure(429, "Rate limit reached", type="requests", headers={"Retry-After": "2"})),
                       timed(Reply(files_answer(GOOD))))
    _, job_id = start(client, auth_headers, spec=BOOKSHOP)
    retrying = wait_for_job(client, auth_headers, job_id, statuses=("retrying", "succeeded", "failed"))
    assert retrying["status"] == "retrying" and retrying["error"]["type"] == "ProviderUnavailable"
    assert "rate limiting requests (429)" in retrying["error"]["message"]
    job = wait_for_job(client, auth_headers, job_id)

    assert job["status"] == "succeeded" and job["attempts"] == 2 and job["error"] is None, job
    # The test settings' backoff is 0.2 s: only the server's Retry-After explains a longer wait.
    assert arrivals[1] - arrivals[0] >= 1.9


@with_settings(job_max_attempts=3)
def test_server_errors_on_every_attempt_fail_the_job_after_the_last(client, auth_headers, worker, openai_peer):
    openai_peer.script(*[Reply.failure(503, "The server is overloaded", type="server_error")] * 3)
    _, job_id = start(client, auth_headers, spec=BOOKSHOP)
    job = wait_for_job(client, auth_headers, job_id)

    assert job["status"] == "failed" and job["attempts"] == 3, job
    assert job["error"]["type"] == "ProviderUnavailable" and "failed (503)" in job["error"]["message"]
    assert len(openai_peer.completions) == 3


@with_settings(llm_api_key=WRONG_KEY, log_level="DEBUG")
def test_a_refused_key_fails_at_once_and_the_key_is_nowhere(client, auth_headers, worker, openai_peer, db, caplog,
                                                           capfd):
    caplog.set_level(logging.DEBUG)
    _, job_id = start(client, auth_headers, prompt=BOOKSHOP_PROMPT)
    job = wait_for_job(client, auth_headers, job_id)

    assert job["status"] == "failed" and job["attempts"] == 1, job
    assert job["error"]["type"] == "ProviderRejected" and job["error"]["details"] == {"reason": "authentication"}
    assert "refused the API key (401)" in job["error"]["message"]
    [request] = openai_peer.completions
    assert request.headers["authorization"] == f"Bearer {WRONG_KEY}", "the key was sent, so it could leak"

    with db.transaction() as session:
        rows = [str(tuple(row)) for row in session.execute(text("SELECT * FROM jobs"))]
    answered = [client.get(f"/api/v2/jobs/{job_id}", headers=auth_headers).get_data(as_text=True),
                client.get("/api/v2/jobs", headers=auth_headers).get_data(as_text=True)]
    logs = caplog.text + "".join(capfd.readouterr())
    assert f"job {job_id} failed: ProviderRejected" in logs, "the failure was logged"
    for place in (*rows, *answered, logs):
        assert WRONG_KEY not in place and LLM_TEST_KEY not in place


# Long enough that a busy machine never stalls the good answer's stream past it: the worker, the peer
# and the test share one process (and its interpreter lock) here.
@with_settings(llm_timeout_seconds=2)
def test_a_model_server_falling_silent_times_out_and_the_retry_succeeds(client, auth_headers, worker, openai_peer):
    code = files_answer(GOOD)
    openai_peer.script(Reply.hang(after_tokens=5, text=code), Reply(code))
    _, job_id = start(client, auth_headers, spec=BOOKSHOP)
    job = wait_for_job(client, auth_headers, job_id)

    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    assert openai_peer.completions[0].disconnected.wait(10), "the silent call was given up"
    # The attempt that timed out is charged beside the one that succeeded.
    assert job["usage"]["stages"]["generate"]["completion_tokens"] == 5 + len(tokens_of(code))


@with_settings(llm_timeout_seconds=300)
def test_cancel_while_the_model_streams_stops_the_call_and_cancels_the_job(client, auth_headers, worker,
                                                                          openai_peer):
    openai_peer.script(Reply.hang(after_tokens=40, text=files_answer(GOOD)))
    project_id, job_id = start(client, auth_headers, spec=BOOKSHOP)
    deadline = time.monotonic() + 60
    while True:
        polled = client.get(f"/api/v2/jobs/{job_id}", headers=auth_headers).get_json()
        if polled["progress"]["stage"] == "generate" and polled["progress"]["tokens"] > 0:
            break
        assert polled["status"] == "running" or polled["status"] == "queued", polled
        assert time.monotonic() < deadline, polled
        time.sleep(0.1)

    canceled_at = time.monotonic()
    assert client.post(f"/api/v2/jobs/{job_id}/cancel", headers=auth_headers).status_code == 202
    job = wait_for_job(client, auth_headers, job_id, timeout=30)
    assert job["status"] == "canceled", job
    call = openai_peer.completions[0]
    assert call.disconnected.wait(10), "the peer saw the connection closed"
    # Cancel stops a running model call within about two seconds; 3 s leaves room for a loaded machine.
    stopped_after = call.disconnected_at - canceled_at
    assert stopped_after < 3.0, f"the model call was cut {stopped_after:.2f} s after the cancel"
    assert job["usage"]["stages"]["generate"]["completion_tokens"] == 40, "a canceled job is charged too"
    assert project_paths(client, auth_headers, project_id) == set()


@with_settings(llm_max_job_tokens=3000, plan_free_monthly_tokens=3000)
def test_the_job_token_cap_stops_a_job_and_the_spent_budget_refuses_the_next(client, auth_headers, worker,
                                                                             openai_peer):
    openai_peer.script(Reply(spec_answer()), Reply(files_answer(GOOD), tokens_per_second=500))
    project_id, job_id = start(client, auth_headers, prompt=BOOKSHOP_PROMPT)
    job = wait_for_job(client, auth_headers, job_id)

    assert job["status"] == "failed" and job["attempts"] == 1, job
    assert job["error"]["type"] == "TokenBudgetExceeded"
    assert "more than the 3000 one job may use (LLM_MAX_JOB_TOKENS)" in job["error"]["message"]
    used = job["usage"]["total_tokens"]
    assert job["error"]["details"] == {"used": used, "cap": 3000} and used > 3000
    assert set(job["usage"]["stages"]) == {"plan", "generate"}, "stopped in the middle: the plan went through"
    assert openai_peer.completions[1].disconnected.wait(10), "the stream was cut, not read to its end"

    usage = client.get("/api/v2/billing/usage", headers=auth_headers).get_json()
    assert usage["tokens"] == {"used": used, "limit": 3000, "left": 0}
    refused = generate(client, auth_headers, project_id, prompt=BOOKSHOP_PROMPT)
    assert refused.status_code == 402 and refused.mimetype == "application/problem+json"
    problem = refused.get_json()
    assert (problem["limit"], problem["plan"], problem["allowed"], problem["used"]) == \
        ("monthly_tokens", "free", 3000, used)
    assert problem["resets_at"] == usage["resets_at"].replace("Z", "+00:00")
    assert len(openai_peer.completions) == 2, "the refused request never reached the model"


def test_files_the_model_aims_outside_the_project_are_refused_and_never_written(client, auth_headers, worker,
                                                                               openai_peer, caplog):
    caplog.set_level(logging.WARNING, logger="shared.generator.llm_provider")
    escapes = {"../evil.py": "x = 1\n", "/etc/evil.py": "x = 1\n", "bookshop/../../evil.py": "x = 1\n",
               "static/../../evil.py": "x = 1\n"}
    openai_peer.script(Reply(files_answer({**GOOD, **escapes})))
    project_id, job_id = start(client, auth_headers, spec=BOOKSHOP)
    job = wait_for_job(client, auth_headers, job_id)

    assert job["status"] == "succeeded" and job["result"]["summary"]["repair_attempts"] == 0, job
    paths = project_paths(client, auth_headers, project_id)
    assert paths == set(job["result"]["files"]) and not any("evil" in path for path in paths)
    refused = [record.getMessage() for record in caplog.records if "was refused" in record.getMessage()]
    assert any("'../evil.py' was refused" in line for line in refused), refused
    assert any("'/etc/evil.py' was refused" in line for line in refused), refused
