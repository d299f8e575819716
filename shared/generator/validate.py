"""Check a generated project: compile every Python file, then run the project's own tests."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

OUTPUT_TAIL_CHARS = 4000
SCANNED_LOG_BYTES = 256 * 1024

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


def _write_files(root: Path, files: Mapping[str, str]) -> list[FileProblem]:
    problems: list[FileProblem] = []
    for path, content in files.items():
        target = root.joinpath(*PurePosixPath(path).parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "w", encoding="utf-8", newline="") as handle:
                handle.write(content)
        except (OSError, UnicodeEncodeError) as exc:
            problems.append(FileProblem(path, f"cannot be written: {exc}"))
    return problems


def _test_env(scratch: Path) -> dict[str, str]:
    # A minimal environment: no inherited PYTHONPATH, proxies or credentials, temp files kept in the sandbox.
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONNOUSERSITE": "1",
    }
    for key in ("SYSTEMROOT", "COMSPEC", "TEMP", "TMP"):
        if key in os.environ:
            env[key] = str(scratch) if key in ("TEMP", "TMP") else os.environ[key]
    return env


def _kill(process: subprocess.Popen[bytes]) -> None:
    # The tests run in their own session, so killing the group also ends any process they started.
    if hasattr(os, "killpg"):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    else:
        process.kill()
    process.wait()


def _read_log(log_path: Path) -> str:
    # Only the end of the log is read: runaway output must not exhaust memory. It is still far more
    # than the reported tail, so tracebacks printed early by the server thread can be scanned too.
    with open(log_path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - SCANNED_LOG_BYTES))
        return handle.read().decode("utf-8", errors="replace")


def _implicated(output: str, root: Path, files: Mapping[str, str]) -> tuple[str, ...]:
    real_root = os.path.realpath(root)
    found: list[str] = []
    for match in _TRACEBACK_FILE.finditer(output):
        absolute = os.path.realpath(os.path.join(root, match.group(1)))
        if os.path.commonpath([absolute, real_root]) != real_root:
            continue
        relative = PurePosixPath(*Path(os.path.relpath(absolute, real_root)).parts).as_posix()
        if relative in files and relative not in found:
            found.append(relative)
    return tuple(found)


def _run_tests(root: Path, scratch: Path, timeout_seconds: float) -> tuple[int | None, bool, str]:
    command = [sys.executable, "-B", "-m", "unittest", "discover", "-s", "tests"]
    if (root / "tests" / "__init__.py").is_file():
        command += ["-t", "."]
    log_path = scratch / "test-output.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=_test_env(scratch),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=hasattr(os, "killpg"),
        )
        try:
            returncode: int | None = process.wait(timeout=timeout_seconds)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill(process)
            returncode, timed_out = None, True
    return returncode, timed_out, _read_log(log_path)


def _invalid_files_report(problems: list[FileProblem], started: float) -> ValidationReport:
    described = [f"{p.path} (line {p.line}: {p.message})" if p.line else f"{p.path} ({p.message})" for p in problems]
    return ValidationReport(
        passed=False,
        message=f"{len(problems)} file(s) are invalid: " + "; ".join(described) + "; tests not run",
        file_errors=tuple(problems),
        implicated_files=tuple(dict.fromkeys(problem.path for problem in problems)),
        duration_seconds=round(time.monotonic() - started, 3),
    )


def validate_project(files: Mapping[str, str], timeout_seconds: float = 60.0) -> ValidationReport:
    """Compile every .py file, then run the project's unittest suite in a subprocess with a timeout."""
    if timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be positive")
    started = time.monotonic()
    problems = check_files(files)
    if problems:
        return _invalid_files_report(problems, started)
    with tempfile.TemporaryDirectory(prefix="devora-validate-") as tmp:
        root, scratch = Path(tmp) / "project", Path(tmp) / "scratch"
        root.mkdir()
        scratch.mkdir()
        problems = _write_files(root, files)
        if problems:
            return _invalid_files_report(problems, started)
        if not (root / "tests").is_dir():
            return ValidationReport(
                passed=False,
                message="the project has no tests/ directory",
                duration_seconds=round(time.monotonic() - started, 3),
            )
        returncode, timed_out, output = _run_tests(root, scratch, timeout_seconds)
        implicated = _implicated(output, root, files)
    ran = _RAN.search(output)
    tests_run = int(ran.group(1)) if ran else 0
    verdict = _VERDICT.findall(output)
    if timed_out:
        message = f"tests timed out after {timeout_seconds:g} seconds"
    elif returncode != 0:
        message = f"tests failed ({verdict[-1] if verdict else f'exit status {returncode}'})"
    elif tests_run == 0:
        message = "the project's test suite ran no tests"
    else:
        message = f"{tests_run} tests passed"
    passed = not timed_out and returncode == 0 and tests_run > 0
    if implicated and not passed:
        message += "; see " + ", ".join(implicated)
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
