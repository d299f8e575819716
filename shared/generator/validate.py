"""Check a generated project: compile every Python file, then run the project's own tests in the sandbox."""
from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from shared.sandbox import Sandbox
from shared.settings import load_settings

OUTPUT_TAIL_CHARS = 4000
# The detail of the step that lasts: the project's tests running in the sandbox.
RUNNING_TESTS = "running the tests"
RUNNING_TESTS_FRACTION = 0.1

# on_step(fraction of the validation, what it is doing): told as each step begins and when the tests end.
StepCallback = Callable[[float, str], None]

_TRACEBACK_FILE = re.compile(r'File "([^"]+)", line \d+')
_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_VERDICT = re.compile(r"^(FAILED \(.*\)|OK.*)$", re.MULTILINE)


@dataclass(frozen=True)
class FileProblem:
    """A file that is unusable before any test runs: unsafe path, undecodable or not compiling."""

    path: str
    message: str
    line: int | None = None


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of `validate_project`; `message` is a one-line human summary."""

    passed: bool
    message: str
    file_errors: tuple[FileProblem, ...] = ()
    tests_ran: bool = False
    tests_run: int = 0
    timed_out: bool = False
    returncode: int | None = None
    output_tail: str = ""
    implicated_files: tuple[str, ...] = ()
    duration_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-compatible data."""
        return asdict(self)


def _path_problem(path: Any) -> str | None:
    if not isinstance(path, str) or not path:
        return "file path must be a non-empty string"
    if "\\" in path or "\x00" in path or path.startswith("/") or re.match(r"[A-Za-z]:", path):
        return "file path must be relative and use forward slashes"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "file path must not contain empty, '.' or '..' segments"
    return None


def check_files(files: Mapping[str, str]) -> list[FileProblem]:
    """Return the problems found without running anything: bad paths, non-text content, syntax errors."""
    problems: list[FileProblem] = []
    for path in sorted(files, key=str):
        content = files[path]
        problem = _path_problem(path)
        if problem is None and not isinstance(content, str):
            problem = "file content must be text"
        elif problem is None and not _encodable(content):
            problem = "file content cannot be written as UTF-8 text"
        if problem is not None:
            problems.append(FileProblem(str(path), problem))
            continue
        if path.endswith(".py"):
            try:
                compile(content, path, "exec", dont_inherit=True)
            except SyntaxError as exc:
                problems.append(FileProblem(path, f"does not compile: {exc.msg}", exc.lineno))
            except ValueError as exc:
                problems.append(FileProblem(path, f"does not compile: {exc}"))
    return problems


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _implicated(output: str, workdir: str, files: Mapping[str, str]) -> tuple[str, ...]:
    # Tracebacks name files as the sandboxed run saw them: absolute under its working directory.
    found: list[str] = []
    for match in _TRACEBACK_FILE.finditer(output):
        absolute = posixpath.normpath(posixpath.join(workdir, match.group(1)))
        relative = posixpath.relpath(absolute, workdir)
        if relative in files and relative not in found:
            found.append(relative)
    return tuple(found)


def _invalid_files_report(problems: list[FileProblem], started: float) -> ValidationReport:
    described = [f"{p.path} (line {p.line}: {p.message})" if p.line else f"{p.path} ({p.message})" for p in problems]
    return ValidationReport(
        passed=False,
        message=f"{len(problems)} file(s) are invalid: " + "; ".join(described) + "; tests not run",
        file_errors=tuple(problems),
        implicated_files=tuple(dict.fromkeys(problem.path for problem in problems)),
        duration_seconds=round(time.monotonic() - started, 3),
    )


def validate_project(files: Mapping[str, str], timeout_seconds: float = 60.0,
                     sandbox: Sandbox | None = None, on_step: StepCallback | None = None) -> ValidationReport:
    """Compile every .py file, then run the project's unittest suite in `sandbox` with a wall-clock timeout.

    `sandbox` defaults to the one the environment's settings describe. Raises SandboxUnavailable when
    no sandbox works and running unsandboxed is not allowed: then nothing was validated.
    `on_step(fraction, detail)` hears each step as it begins (the compile check at 0, the test run)
    and the outcome when the tests finish (at 1), so a long test run can be shown while it lasts.
    """
    if timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be positive")
    sandbox = sandbox if sandbox is not None else default_sandbox()
    step = on_step if on_step is not None else (lambda _fraction, _detail: None)
    started = time.monotonic()
    step(0.0, f"compiling {sum(1 for path in files if str(path).endswith('.py'))} Python files")
    problems = check_files(files)
    if problems:
        step(1.0, f"{len(problems)} file(s) invalid; tests not run")
        return _invalid_files_report(problems, started)
    if not any(path.startswith("tests/") for path in files):
        step(1.0, "no tests to run")
        return ValidationReport(
            passed=False,
            message="the project has no tests/ directory",
            duration_seconds=round(time.monotonic() - started, 3),
        )
    command = [sandbox.python, "-B", "-m", "unittest", "discover", "-s", "tests"]
    if "tests/__init__.py" in files:
        command += ["-t", "."]
    step(RUNNING_TESTS_FRACTION, RUNNING_TESTS)
    result = sandbox.run(files, command, timeout_seconds)
    output, returncode, timed_out = result.output, result.returncode, result.timed_out
    implicated = _implicated(output, result.workdir, files)
    ran = _RAN.search(output)
    tests_run = int(ran.group(1)) if ran else 0
    verdict = _VERDICT.findall(output)
    if timed_out:
        message = f"tests timed out after {timeout_seconds:g} seconds"
    elif result.killed_reason:
        message = f"tests were {result.killed_reason}"
    elif returncode != 0:
        message = f"tests failed ({verdict[-1] if verdict else f'exit status {returncode}'})"
    elif tests_run == 0:
        message = "the project's test suite ran no tests"
    else:
        message = f"{tests_run} tests passed"
    passed = not timed_out and returncode == 0 and tests_run > 0
    if not passed:
        message += "".join(f"; {sandbox.describe_limit(limit)}" for limit in result.limits_hit)
    if implicated and not passed:
        message += "; see " + ", ".join(implicated)
    step(1.0, f"tests finished: {message}")
    return ValidationReport(
        passed=passed,
        message=message,
        tests_ran=True,
        tests_run=tests_run,
        timed_out=timed_out,
        returncode=returncode,
        output_tail=output[-OUTPUT_TAIL_CHARS:],
        implicated_files=() if passed else implicated,
        duration_seconds=round(time.monotonic() - started, 3),
    )


def default_sandbox() -> Sandbox:
    """The sandbox the environment's settings describe (for callers that were given none)."""
    return Sandbox.from_settings(load_settings())
