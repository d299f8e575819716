"""The sandbox generated code runs in: real bubblewrap, real hostile programs, nothing imitated.

Each hostile project is validated as a generation job would validate it. Each must be contained,
reported as a validation failure that says why, and leave this process able to validate the next one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.generator import render, run_pipeline, validate_project
from shared.sandbox import Sandbox, SandboxConfig, SandboxUnavailable
from shared.schemas.spec import AppSpec
from shared.settings import PROJECT_ROOT
from tests.conftest import IN_CI

SMALL = {"app_name": "notes", "entities": [{"name": "Note", "fields": [{"name": "title", "type": "string"}]}]}
LIMITS = SandboxConfig(cpu_seconds=30, memory_mb=256, max_processes=32, max_file_mb=4, scratch_mb=32)
PASSING = {"tests/__init__.py": "", "tests/test_ok.py": (
    "import unittest\n\n\nclass Fine(unittest.TestCase):\n    def test_fine(self):\n        self.assertTrue(True)\n")}


def bwrap_sandbox(config: SandboxConfig) -> Sandbox:
    """A sandbox that really is one: skipped where bubblewrap cannot run, a failure under CI."""
    sandbox = Sandbox(config)
    status = sandbox.status()
    if status.state != "available":
        reason = f"bubblewrap sandbox not available here: {status.detail}"
        if shutil.which("bwrap") is None:
            reason = "bubblewrap (bwrap) is not installed"
        if IN_CI:
            pytest.fail(f"the sandbox is required under CI: {reason}")
        pytest.skip(reason)
    return sandbox


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return bwrap_sandbox(LIMITS)


def hostile(test_body: str) -> dict[str, str]:
    """A project whose only test is `test_body` (the body of a TestCase method, indented 8)."""
    source = "import os, socket, subprocess, sys, time, unittest\n\n\nclass Hostile(unittest.TestCase):\n" \
             "    def test_hostile(self):\n" + test_body
    return {"tests/__init__.py": "", "tests/test_hostile.py": source}


def writes_outside(outside: list[str]) -> dict[str, str]:
    """A project whose test writes in its scratch directory, then passes only if it could write to every
    `outside` path."""
    return hostile(f"""\
        for path in ("inside.txt", os.environ["HOME"] + "/inside.txt", os.environ["TMPDIR"] + "/inside.txt"):
            with open(path, "w") as handle:
                handle.write("mine")
        print("inside writes: ok", flush=True)
        escaped = []
        for path in {outside!r}:
            try:
                with open(path, "w") as handle:
                    handle.write("pwned")
                escaped.append(path)
            except OSError as error:
                print("refused:", path, type(error).__name__, error.strerror, flush=True)
        self.assertEqual(escaped, {outside!r}, "could not write outside")
""")


def carries_on(sandbox: Sandbox) -> None:
    report = validate_project(PASSING, timeout_seconds=30, sandbox=sandbox)
    assert report.passed and report.message == "1 tests passed", report


def host_processes_with(marker: str) -> list[int]:
    """Host PIDs whose command line contains `marker` (seen from outside any sandbox)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if marker.encode() in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_a_generated_project_passes_its_tests_in_the_sandbox(sandbox: Sandbox) -> None:
    files = render(AppSpec.model_validate(SMALL), "fullstack")
    report = validate_project(files, timeout_seconds=60, sandbox=sandbox)
    assert report.passed, report.output_tail
    assert report.tests_run > 5 and report.message == f"{report.tests_run} tests passed"
    result = sandbox.run(files, [sandbox.python, "-m", "unittest", "discover", "-s", "tests", "-t", "."], timeout=60)
    assert result.sandboxed and result.workdir == "/scratch/project" and result.returncode == 0
    assert result.killed_reason is None and result.limits_hit == ()


def test_a_directory_is_copied_in_without_its_symbolic_links(sandbox: Sandbox, tmp_path) -> None:
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "main.py").write_text("print(open('pkg/data.bin', 'rb').read().hex())\n")
    (project / "pkg" / "data.bin").write_bytes(b"\x00\xff")
    result = sandbox.run(project, [sandbox.python, "pkg/main.py"], timeout=30)
    assert result.returncode == 0 and result.output == "00ff\n"
    (project / "pkg" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="is a symbolic link"):
        sandbox.run(project, [sandbox.python, "pkg/main.py"], timeout=30)


def test_the_code_runs_unprivileged_in_a_minimal_world(sandbox: Sandbox) -> None:
    program = (
        "import json, os, subprocess\n"
        "status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines())\n"
        "nested = subprocess.run(['unshare', '--user', 'true'], capture_output=True)\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'cap': status['CapEff'],\n"
        "  'no_new_privs': status['NoNewPrivs'], 'nested_userns': nested.returncode, 'root': sorted(os.listdir('/')),\n"
        "  'interfaces': [name for _, name in __import__('socket').if_nameindex()], 'cwd': os.getcwd()}))\n"
    )
    result = sandbox.run({"probe.py": program}, [sandbox.python, "probe.py"], timeout=30)
    assert result.returncode == 0, result.output
    seen = json.loads(result.output)
    assert seen["uid"] == 1000 and seen["gid"] == 1000
    assert seen["cap"] == "0000000000000000" and seen["no_new_privs"] == "1"
    assert seen["nested_userns"] != 0, "no user namespace can be created inside"
    assert seen["interfaces"] == ["lo"] and seen["cwd"] == "/scratch/project"
    assert set(seen["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "proc", "dev",
                                 "input", "scratch", "root", "home", "opt"}
    assert not {"work", "tmp", "var", "run", "sys"} & set(seen["root"])


def test_an_environment_secret_of_the_worker_is_not_visible(sandbox: Sandbox, monkeypatch, tmp_path) -> None:
    secret = "sk_live_" + uuid.uuid4().hex
    monkeypatch.setenv("STRIPE_API_KEY", secret)
    monkeypatch.setenv("SECRET_KEY", secret)
    (tmp_path / "secret.txt").write_text(secret)
    places = [str(tmp_path / "secret.txt"), str(PROJECT_ROOT / ".env.example"), str(PROJECT_ROOT / "shared/settings.py")]
    listings = [str(Path.home()), str(PROJECT_ROOT), str(PROJECT_ROOT / "instance")]
    body = f"""\
        import glob, json
        seen = {{"environ": dict(os.environ)}}
        for path in glob.glob("/proc/*/environ") + {places!r}:
            try:
                with open(path, "rb") as handle:
                    seen[path] = handle.read().decode("utf-8", "replace")
            except OSError as error:
                seen[path] = type(error).__name__
        for directory in {listings!r}:
            try:
                seen["ls " + directory] = sorted(os.listdir(directory))
            except OSError as error:
                seen["ls " + directory] = type(error).__name__
        print("FOUND " + json.dumps(seen), flush=True)
        self.assertTrue("sk_live_" in json.dumps(seen), "no key found to steal")
"""
    report = validate_project(hostile(body), timeout_seconds=30, sandbox=sandbox)

    assert not report.passed and report.tests_ran
    assert report.message.startswith("tests failed (FAILED (failures=1))"), report.message
    assert "AssertionError: False is not true : no key found to steal" in report.output_tail
    assert secret not in report.output_tail
    seen = json.loads(re.search(r"^FOUND (.*)$", report.output_tail, re.M).group(1))
    assert set(seen["environ"]) == {"HOME", "LANG", "LOGNAME", "PATH", "PWD", "PYTHONDONTWRITEBYTECODE",
                                    "PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONNOUSERSITE", "TMPDIR", "TZ", "USER"}
    assert seen["environ"]["HOME"] == "/scratch/home"
    for path in places:
        assert seen[path] == "FileNotFoundError", path
    assert seen[f"ls {PROJECT_ROOT}"] == seen[f"ls {PROJECT_ROOT / 'instance'}"] == "FileNotFoundError"
    home = seen[f"ls {Path.home()}"]
    # The home directory exists inside only as the way to the interpreter when that lives there.
    assert home == "FileNotFoundError" or (len(home) == 1 and sandbox.python.startswith(f"{Path.home()}/{home[0]}/"))
    assert any(key.endswith("/environ") for key in seen), "the sandbox's own processes were looked at"
    carries_on(sandbox)


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, list]]:
    """A loopback TCP listener of this process, recording every connection it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, peer = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(peer)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server, accepted
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_sockets_reach_neither_loopback_nor_the_outside(sandbox: Sandbox, listener) -> None:
    server, accepted = listener
    port = server.getsockname()[1]
    abstract = f"\0devora-test-{uuid.uuid4().hex}"
    unix_server = socket.socket(socket.AF_UNIX)
    unix_server.bind(abstract)
    unix_server.listen()
    body = f"""\
        attempts = {{
            "loopback": lambda: socket.create_connection(("127.0.0.1", {port}), timeout=5),
            "outside": lambda: socket.create_connection(("1.1.1.1", 443), timeout=5),
            "dns": lambda: socket.getaddrinfo("example.com", 443),
            "udp": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53)),
            "abstract unix": lambda: socket.socket(socket.AF_UNIX).connect({abstract!r}),
        }}
        reached = []
        for name, attempt in attempts.items():
            try:
                attempt()
                reached.append(name)
            except OSError as error:
                print(name, "refused:", error, flush=True)
        self.assertEqual(reached, list(attempts), "the network is out of reach")
"""
    try:
        report = validate_project(hostile(body), timeout_seconds=30, sandbox=sandbox)
    finally:
        unix_server.close()

    assert not report.passed and report.message.startswith("tests failed (FAILED (failures=1))"), report.message
    assert "the sandbox has no network" in report.message
    assert "loopback refused: [Errno 111] Connection refused" in report.output_tail
    assert "outside refused: [Errno 101] Network is unreachable" in report.output_tail
    assert "udp refused: [Errno 101] Network is unreachable" in report.output_tail
    assert "dns refused:" in report.output_tail and "abstract unix refused:" in report.output_tail
    assert accepted == [], "nothing reached the listener"
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    deadline = time.monotonic() + 5
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(accepted) == 1, "the listener was live: this process itself gets through"
    carries_on(sandbox)


def test_a_fork_bomb_is_held_to_the_process_limit(sandbox: Sandbox) -> None:
    marker = f"devora-bomb-{uuid.uuid4().hex}"
    bomb = ("import os, time\\nfirst = True\\nwhile True:\\n    try:\\n        os.fork()\\n"
            "    except OSError as error:\\n        if first:\\n            print('fork refused:', error, flush=True)\\n"
            "            first = False\\n        time.sleep(0.01)\\n")
    body = f"""\
        subprocess.Popen([sys.executable, "-c", "{bomb}", "{marker}"])
        time.sleep(3)
        print("processes seen:", len([pid for pid in os.listdir("/proc") if pid.isdigit()]), flush=True)
        self.fail("the bomb went off")
"""
    report = validate_project(hostile(body), timeout_seconds=60, sandbox=sandbox)

    assert not report.passed and report.message.startswith("tests failed (FAILED (failures=1))"), report.message
    assert f"the limit of {LIMITS.max_processes} processes was reached" in report.message
    assert "fork refused: [Errno 11] Resource temporarily unavailable" in report.output_tail
    seen = int(re.search(r"processes seen: (\d+)", report.output_tail).group(1))
    assert LIMITS.max_processes // 2 < seen <= LIMITS.max_processes, seen
    assert host_processes_with(marker) == [], "every process of the bomb is gone"
    carries_on(sandbox)


def test_writes_outside_its_scratch_directory_are_refused(sandbox: Sandbox, tmp_path) -> None:
    name = f"devora-pwned-{uuid.uuid4().hex}"
    outside = [str(PROJECT_ROOT / name), f"/tmp/{name}", str(Path.home() / name), str(tmp_path / name), f"/{name}",
               f"/usr/{name}", f"/etc/{name}", f"/input/{name}", f"/dev/shm/{name}", f"/dev/{name}"]
    report = validate_project(writes_outside(outside), timeout_seconds=30, sandbox=sandbox)

    assert not report.passed and report.message.startswith("tests failed (FAILED (failures=1))"), report.message
    assert "only the project's scratch directory is writable" in report.message
    assert "inside writes: ok" in report.output_tail
    assert report.output_tail.count("refused: ") == len(outside)
    for path in outside:
        assert not os.path.exists(path), path
    assert f"refused: /input/{name} OSError Read-only file system" in report.output_tail
    carries_on(sandbox)


def test_an_endless_loop_is_killed_by_the_wall_clock_with_its_whole_tree(sandbox: Sandbox) -> None:
    marker = f"devora-loop-{uuid.uuid4().hex}"
    # A child that leaves the session, ignores SIGTERM and orphans a busy grandchild.
    escapee = ("import os, signal\\nos.setsid()\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
               "if os.fork():\\n    os._exit(0)\\nwhile True:\\n    pass\\n")
    body = f"""\
        subprocess.Popen([sys.executable, "-c", "{escapee}", "{marker}"])
        while True:
            pass
"""
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(validate_project, hostile(body), 4, sandbox)
        deadline = time.monotonic() + 30
        while not host_processes_with(marker) and time.monotonic() < deadline and not running.done():
            time.sleep(0.05)
        assert host_processes_with(marker), "the escapee ran (seen from the host)"
        report = running.result(timeout=60)

    assert not report.passed and report.timed_out and report.returncode is None
    assert report.message == "tests timed out after 4 seconds"
    assert host_processes_with(marker) == [], "nothing the tests started survives the kill"
    carries_on(sandbox)


def test_too_much_memory_is_refused(sandbox: Sandbox) -> None:
    body = """\
        hoard = bytearray(1024 * 1024 * 1024)
        self.assertEqual(len(hoard), 1024 * 1024 * 1024)
"""
    report = validate_project(hostile(body), timeout_seconds=30, sandbox=sandbox)
    assert not report.passed and report.message.startswith("tests failed (FAILED (errors=1))"), report.message
    assert f"the memory limit of {LIMITS.memory_mb} MB was reached" in report.message
    assert "MemoryError" in report.output_tail
    carries_on(sandbox)


def test_a_huge_file_stops_at_the_file_size_limit(sandbox: Sandbox) -> None:
    body = """\
        chunk = b"x" * (1024 * 1024)
        try:
            with open("huge.bin", "wb") as handle:
                for _ in range(64):
                    handle.write(chunk)
        finally:
            print("written:", os.path.getsize("huge.bin"), flush=True)
"""
    report = validate_project(hostile(body), timeout_seconds=30, sandbox=sandbox)
    assert not report.passed and report.message.startswith("tests failed (FAILED (errors=1))"), report.message
    assert f"the file size limit of {LIMITS.max_file_mb} MB was reached" in report.message
    assert "[Errno 27] File too large" in report.output_tail
    assert f"written: {LIMITS.max_file_mb * 1024 * 1024}" in report.output_tail
    carries_on(sandbox)


def test_many_files_fill_only_the_scratch_space(sandbox: Sandbox) -> None:
    body = """\
        chunk = b"x" * (1024 * 1024)
        for number in range(64):
            with open(f"part-{number}.bin", "wb") as handle:
                for _ in range(3):
                    handle.write(chunk)
"""
    report = validate_project(hostile(body), timeout_seconds=30, sandbox=sandbox)
    assert not report.passed and report.message.startswith("tests failed (FAILED (errors=1))"), report.message
    assert f"the scratch space of {LIMITS.scratch_mb} MB is full" in report.message
    assert "[Errno 28] No space left on device" in report.output_tail
    carries_on(sandbox)


def test_output_flood_is_cut_at_the_file_size_limit(sandbox: Sandbox) -> None:
    program = "import sys\nline = 'y' * 1023 + '\\n'\nwhile True:\n    sys.stdout.write(line)\n"
    result = sandbox.run({"flood.py": program}, [sandbox.python, "flood.py"], timeout=30)
    # Python cannot even report the failed write: its stderr is the same full file.
    assert result.returncode not in (0, None) and not result.timed_out
    assert result.limits_hit == ("file_size",) and set(result.output) == {"y", "\n"}
    assert len(result.output) <= 256 * 1024, "only the end of the output is read back"


def test_cpu_time_is_limited() -> None:
    sandbox = bwrap_sandbox(SandboxConfig(cpu_seconds=1, memory_mb=256, max_processes=32, max_file_mb=4,
                                          scratch_mb=32))
    report = validate_project(hostile("        while True:\n            pass\n"), timeout_seconds=60, sandbox=sandbox)
    assert not report.passed and not report.timed_out
    assert report.message == "tests were killed by SIGXCPU; the CPU time limit of 1 s was reached"
    carries_on(sandbox)


def test_without_a_sandbox_generated_code_is_refused() -> None:
    refusing = Sandbox(SandboxConfig(backend="none"))
    status = refusing.status()
    assert status.state == "unavailable" and status.detail == "SANDBOX_BACKEND=none"
    with pytest.raises(SandboxUnavailable, match="generated code was not run: no sandbox is available"):
        validate_project(PASSING, timeout_seconds=30, sandbox=refusing)
    stages: list[str] = []
    with pytest.raises(SandboxUnavailable, match="SANDBOX_ALLOW_UNSANDBOXED=true"):
        run_pipeline(SMALL, "agentic", sandbox=refusing, on_progress=lambda _percent, stage: stages.append(stage))
    assert stages == [], "nothing is generated that could not be validated"


def test_a_sandbox_that_cannot_start_refuses_to_run_code(tmp_path) -> None:
    broken = Sandbox(SandboxConfig(python=str(tmp_path / "no-such-python")))
    status = broken.status()
    assert status.state == "unavailable" and status.detail.startswith(f"{tmp_path}/no-such-python: ")
    with pytest.raises(SandboxUnavailable, match="no sandbox is available"):
        broken.run(PASSING, ["python3", "-m", "unittest"], timeout=30)


def test_unsandboxed_runs_only_when_explicitly_allowed(monkeypatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_unsandboxed_but_still_not_passed_on")
    unsafe = Sandbox(SandboxConfig(backend="none", allow_unsandboxed=True))
    status = unsafe.status()
    assert status.state == "disabled-unsafe" and "SANDBOX_ALLOW_UNSANDBOXED=true" in status.detail
    result = unsafe.run({"env.py": "import os\nprint(sorted(os.environ))\n"}, [unsafe.python, "env.py"], timeout=30)
    assert not result.sandboxed and result.returncode == 0
    assert "STRIPE_API_KEY" not in result.output and "'HOME'" in result.output
    report = validate_project(render(AppSpec.model_validate(SMALL), "agentic"), timeout_seconds=60, sandbox=unsafe)
    assert report.passed, report.output_tail
