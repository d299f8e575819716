"""The embedded generator: rendering, validation of generated projects, and the staged pipeline."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from shared.generator import (
    EmbeddedProvider,
    GenerationCanceled,
    GenerationFailed,
    GenerationProvider,
    Plan,
    ProgressUpdate,
    ProviderRejected,
    RunContext,
    ValidationReport,
    plan_files,
    render,
    run_pipeline,
    validate_project,
)
from shared.schemas.spec import AppSpec, GenerationKind

THREE_ENTITIES: dict[str, Any] = {
    "app_name": "bookshop",
    "description": "Authors, their books and what readers think of them.",
    "options": {"page_size": 10},
    "entities": [
        {
            "name": "Author",
            "description": "Someone who writes <books> & more.",
            "fields": [
                {"name": "name", "type": "string", "max_length": 80},
                {"name": "email", "type": "string", "unique": True},
                {"name": "bio", "type": "text", "required": False},
                {"name": "born_on", "type": "date", "required": False},
            ],
        },
        {
            "name": "Book",
            "fields": [
                {"name": "title", "type": "string"},
                {"name": "year", "type": "integer"},
                {"name": "price", "type": "float"},
                {"name": "in_print", "type": "boolean"},
                {"name": "published_at", "type": "datetime", "required": False},
                {"name": "isbn", "type": "string", "unique": True, "max_length": 1},
            ],
        },
        {
            "name": "BookReview",
            "fields": [
                {"name": "rating", "type": "integer", "required": False},
                {"name": "body", "type": "text", "required": False},
                {"name": "recommended", "type": "boolean", "unique": True},
                {"name": "reviewed_on", "type": "date", "required": False},
                {"name": "score", "type": "float", "required": False},
            ],
        },
    ],
}
SMALL: dict[str, Any] = {
    "app_name": "notes",
    "entities": [{"name": "Note", "fields": [{"name": "title", "type": "string"}, {"name": "done", "type": "boolean"}]}],
}
PACKAGE_FILES = ["__init__.py", "__main__.py", "app.py", "models.py", "store.py", "validation.py"]
COMMON_FILES = {".gitignore", "README.md", "tests/__init__.py", "tests/test_api.py"}


def write_project(root: Path, files: Mapping[str, str]) -> None:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


@pytest.fixture(scope="module")
def spec() -> AppSpec:
    return AppSpec.model_validate(THREE_ENTITIES)


@pytest.fixture(scope="module")
def fullstack(spec: AppSpec) -> dict[str, str]:
    return render(spec, GenerationKind.FULLSTACK)


def test_fullstack_renders_expected_files(fullstack: dict[str, str]) -> None:
    expected = COMMON_FILES | {f"bookshop/{name}" for name in PACKAGE_FILES}
    expected |= {"static/index.html", "static/app.js", "static/style.css"}
    assert set(fullstack) == expected
    assert list(fullstack) == sorted(fullstack)
    for path, content in fullstack.items():
        if path.endswith(".py"):
            compile(content, path, "exec")
    models = fullstack["bookshop/models.py"]
    for table in ("authors", "books", "book_reviews"):
        assert f'CREATE TABLE IF NOT EXISTS "{table}"' in models
    assert '"isbn" TEXT NOT NULL UNIQUE CHECK (length("isbn") <= 1)' in models
    assert '"in_print" INTEGER NOT NULL CHECK ("in_print" IN (0, 1))' in models
    assert '"/": ("index.html"' in fullstack["bookshop/app.py"]
    page = fullstack["static/index.html"]
    assert 'id="entity-book_reviews"' in page
    assert "Someone who writes &lt;books&gt; &amp; more." in page
    assert '<input type="datetime-local" data-field="published_at" step="1">' in page
    assert "http://" not in page + fullstack["static/app.js"] and "https://" not in page
    readme = fullstack["README.md"]
    assert "python -m bookshop" in readme and "python -m unittest" in readme
    assert "/api/book_reviews" in readme


def test_agentic_has_no_static_page(spec: AppSpec) -> None:
    files = render(spec, "agentic")
    assert set(files) == COMMON_FILES | {f"bookshop/{name}" for name in PACKAGE_FILES}
    assert "STATIC_FILES: Dict[str, Tuple[str, str]] = {}" in files["bookshop/app.py"]
    assert [planned.path for planned in plan_files(spec, "agentic")] == list(files)


def test_rendering_is_deterministic(spec: AppSpec, fullstack: dict[str, str]) -> None:
    again = render(AppSpec.model_validate(json.loads(json.dumps(THREE_ENTITIES))), "fullstack")
    assert again == fullstack
    assert [(path, content.encode()) for path, content in again.items()] == [
        (path, content.encode()) for path, content in fullstack.items()
    ]


def test_descriptions_are_embedded_safely() -> None:
    tricky = 'Say "hi" \\ \'\'\' """ </p><script>x</script> \U0001F600\nsecond line'
    data = json.loads(json.dumps(SMALL))
    data["description"] = tricky
    data["entities"][0]["description"] = tricky
    files = render(AppSpec.model_validate(data), "fullstack")
    namespace: dict[str, Any] = {}
    exec(compile(files["notes/models.py"], "notes/models.py", "exec"), namespace)
    assert namespace["ENTITIES"][0].description == tricky
    assert "<script>x</script>" not in files["static/index.html"]
    assert "&lt;script&gt;x&lt;/script&gt;" in files["static/index.html"]


def test_generated_project_passes_validation(fullstack: dict[str, str]) -> None:
    report = validate_project(fullstack, timeout_seconds=60)
    assert report.passed, report.output_tail
    assert report.tests_ran and not report.timed_out and report.returncode == 0
    # 3 entities x 6 shared CRUD tests, plus the entity-specific checks and the routing tests.
    assert report.tests_run >= 25
    assert report.message == f"{report.tests_run} tests passed"
    assert report.file_errors == () and report.implicated_files == ()


def test_generated_tests_pass_when_run_directly(fullstack: dict[str, str], tmp_path: Path) -> None:
    write_project(tmp_path, fullstack)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-m", "unittest", "-v"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "test_rejects_invalid_value (tests.test_api.BookReviewApiTest" in completed.stderr
    assert "test_serves_web_page" in completed.stderr
    assert completed.stderr.rstrip().endswith("OK")


def test_generated_main_serves_the_api(tmp_path: Path) -> None:
    write_project(tmp_path, render(AppSpec.model_validate(SMALL), "fullstack"))
    command = [sys.executable, "-m", "notes", "0", "--db", str(tmp_path / "data.sqlite3")]
    server = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith("notes listening on http://127.0.0.1:"), banner
        base = banner.split()[3].rstrip("/")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            base + "/api/notes",
            data=json.dumps({"title": "milk", "done": False}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with opener.open(request, timeout=10) as response:
            assert response.status == 201
            assert json.load(response) == {"id": 1, "title": "milk", "done": False}
        with opener.open(base + "/", timeout=10) as response:
            assert response.headers["Content-Security-Policy"] == "default-src 'self'"
            assert "<h2>Note</h2>" in response.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def test_broken_python_file_is_named(fullstack: dict[str, str]) -> None:
    files = dict(fullstack)
    files["bookshop/store.py"] = files["bookshop/store.py"].replace("def init_db(", "def init_db((", 1)
    report = validate_project(files, timeout_seconds=60)
    assert not report.passed and not report.tests_ran
    assert [problem.path for problem in report.file_errors] == ["bookshop/store.py"]
    assert report.file_errors[0].line is not None
    assert report.implicated_files == ("bookshop/store.py",)
    assert "bookshop/store.py" in report.message and "does not compile" in report.message


def test_failing_tests_are_reported_with_output() -> None:
    files = render(AppSpec.model_validate(SMALL), "agentic")
    files["notes/store.py"] = files["notes/store.py"].replace("return cursor.rowcount > 0", "return 1 / 0")
    report = validate_project(files, timeout_seconds=60)
    assert not report.passed and report.tests_ran and report.returncode not in (0, None)
    assert report.message.startswith("tests failed (FAILED (")
    assert "ZeroDivisionError" in report.output_tail
    assert len(report.output_tail) <= 4000
    assert report.implicated_files[0] == "notes/app.py"
    assert "notes/store.py" in report.implicated_files


def test_timeout_is_a_failure() -> None:
    files = {
        "tests/__init__.py": "",
        "tests/test_slow.py": "import time\nimport unittest\n\n\nclass Slow(unittest.TestCase):\n"
        "    def test_sleeps(self):\n        time.sleep(30)\n",
    }
    report = validate_project(files, timeout_seconds=0.5)
    assert not report.passed and report.timed_out
    assert report.message == "tests timed out after 0.5 seconds"
    assert report.duration_seconds < 10


def test_unsafe_paths_are_rejected() -> None:
    report = validate_project({"../evil.py": "x = 1", "/abs.txt": "", "ok.py": "x = 1"}, timeout_seconds=5)
    assert not report.passed and not report.tests_ran
    assert {problem.path for problem in report.file_errors} == {"../evil.py", "/abs.txt"}


class Recorder:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.events: list[tuple[int, str]] = []
        self.cancel_after = cancel_after

    def progress(self, percent: int, stage: str) -> None:
        self.events.append((percent, stage))

    def should_cancel(self) -> bool:
        return self.cancel_after is not None and len(self.events) >= self.cancel_after

    @property
    def stages(self) -> list[str]:
        """The stages in the order they began (a stage reports more than once as it moves)."""
        return [stage for stage, _ in itertools.groupby(stage for _, stage in self.events)]

    def assert_monotonic(self) -> None:
        percents = [percent for percent, _ in self.events]
        assert percents == sorted(set(percents)), percents
        assert percents[-1] == 100


class BreaksFirstGeneration(EmbeddedProvider):
    """Test double: the first project it writes has `target` replaced by `replacement`."""

    def __init__(self, path: str, target: str, replacement: str) -> None:
        self.path, self.target, self.replacement = path, target, replacement
        self.generated = 0

    def generate(self, plan: Plan, run: RunContext) -> dict[str, str]:
        files = super().generate(plan, run)
        self.generated += 1
        if self.generated == 1:
            assert self.target in files[self.path]
            files[self.path] = files[self.path].replace(self.target, self.replacement)
        return files


class NeverRepairs(EmbeddedProvider):
    """Test double: every output, repaired or not, has a syntax error."""

    def generate(self, plan: Plan, run: RunContext) -> dict[str, str]:
        files = super().generate(plan, run)
        files["notes/models.py"] += "\ndef broken(:\n"
        return files

    def repair(self, plan: Plan, files: Mapping[str, str], report: ValidationReport,
               run: RunContext) -> dict[str, str]:
        return self.generate(plan, run)


def test_pipeline_reports_stages_in_order() -> None:
    recorder = Recorder()
    result = run_pipeline(SMALL, "fullstack", on_progress=recorder.progress, should_cancel=recorder.should_cancel)
    assert recorder.stages == ["plan", "generate", "validate", "done"]
    recorder.assert_monotonic()
    assert result.files == render(AppSpec.model_validate(SMALL), "fullstack")
    steps = [percent for percent, stage in recorder.events if stage == "generate"]
    assert len(steps) > 5, "the generate stage moves as each file is written"
    summary = result.summary.to_dict()
    assert summary["kind"] == "fullstack" and summary["provider"] == "embedded"
    assert summary["entity_count"] == 1 and summary["file_count"] == len(result.files)
    assert summary["validation_passed"] is True and summary["repair_attempts"] == 0
    assert summary["tests_run"] == result.report.tests_run > 0
    assert isinstance(EmbeddedProvider(), GenerationProvider)


def test_each_file_is_started_then_generated_and_validation_reports_each_of_its_steps() -> None:
    files_seen: list[tuple[str, str]] = []
    updates: list[ProgressUpdate] = []
    result = run_pipeline(SMALL, "fullstack", on_file=lambda path, action: files_seen.append((path, action)),
                          on_update=updates.append)
    # The embedded provider renders a file whole: it is started and generated at once, in path order.
    assert files_seen == [(path, action) for path in sorted(result.files) for action in ("started", "generated")]
    details = [update.detail for update in updates if update.stage == "generate" and update.detail]
    assert details == [f"generated {path}" for path in sorted(result.files)], "one step per file generated"
    steps = [(update.percent, update.detail) for update in updates if update.stage == "validate" and update.detail]
    python_files = sum(1 for path in result.files if path.endswith(".py"))
    assert [detail for _, detail in steps] == [f"compiling {python_files} Python files", "running the tests",
                                               f"tests finished: {result.report.message}"]
    assert [percent for percent, _ in steps] == sorted(percent for percent, _ in steps)
    assert steps[-1][0] > steps[0][0], "the percent moves through the stage as the tests run and finish"


def test_a_repair_round_names_the_files_it_generates_again_and_those_it_drops() -> None:
    class DropsAFileOnRepair(BreaksFirstGeneration):
        def repair(self, plan, files, report, run):
            repaired = super().repair(plan, files, report, run)
            return {path: content for path, content in repaired.items() if path != ".gitignore"}

    files_seen: list[tuple[str, str]] = []
    updates: list[ProgressUpdate] = []
    provider = DropsAFileOnRepair("notes/store.py", "def init_db(", "def init_db((")
    result = run_pipeline(SMALL, "agentic", provider=provider, max_repairs=1, on_update=updates.append,
                          on_file=lambda path, action: files_seen.append((path, action)))
    first = len(render(AppSpec.model_validate(SMALL), "agentic")) * 2
    assert files_seen[first:] == [("notes/store.py", "started"), ("notes/store.py", "generated"),
                                  (".gitignore", "dropped")]
    assert ".gitignore" not in result.files
    validations = [update.detail for update in updates if update.stage == "validate" and update.detail]
    assert validations[0].startswith("compiling") and validations[1].endswith("file(s) invalid; tests not run")
    assert validations[2:] == [validations[0], "running the tests", f"tests finished: {result.report.message}"]


def test_cancel_between_stages() -> None:
    recorder = Recorder(cancel_after=2)
    with pytest.raises(GenerationCanceled) as caught:
        run_pipeline(SMALL, "agentic", on_progress=recorder.progress, should_cancel=recorder.should_cancel)
    assert caught.value.stage == "validate"
    assert str(caught.value) == "generation canceled before the validate stage"
    assert recorder.stages == ["plan", "generate"]


def test_compile_error_is_repaired() -> None:
    provider = BreaksFirstGeneration("notes/store.py", "def init_db(", "def init_db((")
    recorder = Recorder()
    result = run_pipeline(SMALL, "agentic", provider=provider, on_progress=recorder.progress, max_repairs=2)
    assert recorder.stages == ["plan", "generate", "validate", "repair", "validate", "done"]
    recorder.assert_monotonic()
    assert result.summary.repair_attempts == 1 and result.summary.validation_passed
    assert result.files == render(AppSpec.model_validate(SMALL), "agentic")


def test_failing_test_run_is_repaired_by_full_regeneration() -> None:
    # The broken status code only shows up as assertion failures in tests/test_api.py, which is
    # itself intact, so the repair has to regenerate the whole project.
    provider = BreaksFirstGeneration("notes/app.py", "HTTPStatus.CREATED", "HTTPStatus.OK")
    result = run_pipeline(SMALL, "agentic", provider=provider, max_repairs=1)
    assert result.summary.repair_attempts == 1
    assert "HTTPStatus.CREATED" in result.files["notes/app.py"]


def test_exhausted_repairs_raise_generation_failed() -> None:
    recorder = Recorder()
    with pytest.raises(GenerationFailed) as caught:
        run_pipeline(SMALL, "agentic", provider=NeverRepairs(), on_progress=recorder.progress, max_repairs=2)
    message = str(caught.value)
    assert message.startswith("the generated project failed validation after 2 repair attempt(s)")
    assert "notes/models.py" in message and "Traceback" not in message
    assert caught.value.repair_attempts == 2 and not caught.value.report.passed
    assert recorder.stages == ["plan", "generate", "validate", "repair", "validate", "repair", "validate"]


def test_pipeline_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_repairs"):
        run_pipeline(SMALL, "agentic", max_repairs=11)
    with pytest.raises(ValueError):
        run_pipeline(SMALL, "mobile")


def test_the_embedded_provider_refuses_a_prompt_alone() -> None:
    with pytest.raises(ProviderRejected, match="needs a structured `spec`") as caught:
        run_pipeline(None, "agentic", prompt="a todo app")
    assert caught.value.reason == "spec_required" and caught.value.usage == {}


def test_the_embedded_provider_builds_from_the_spec_when_a_prompt_comes_with_it() -> None:
    with_prompt = run_pipeline(SMALL, "agentic", prompt="notes, but make it pink")
    assert with_prompt.files == render(AppSpec.model_validate(SMALL), "agentic")
    assert with_prompt.summary.usage == {} and with_prompt.summary.total_tokens == 0


def test_a_request_needs_a_spec_or_a_prompt() -> None:
    with pytest.raises(ValueError, match="needs a spec or a prompt"):
        run_pipeline(None, "agentic", prompt="   ")
