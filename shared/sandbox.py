"""A sandbox for running generated code: bubblewrap namespaces, resource limits, a scratch directory, a wall clock.

`Sandbox.run` copies a project into a fresh sandbox, runs one command there and reports how it ended.
The sandboxed code has no network, an environment built from scratch (none of the worker's settings
or secrets), limits on CPU time, address space, processes, file size and open files, and nothing
writable but its own size-limited scratch directory. When the wall clock runs out the whole process
tree is killed: bubblewrap's PID namespace dies with its first process, and that one dies with us.

Without a working bubblewrap, code runs unsandboxed only where SANDBOX_ALLOW_UNSANDBOXED says so
(never in production); otherwise `run` raises `SandboxUnavailable`.
"""
from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from shared import sandbox_layout as layout
from shared import sandbox_process as process_
from shared.settings import Settings

logger = logging.getLogger(__name__)

MAX_OPEN_FILES = 256
PROBE_TIMEOUT_SECONDS = 20.0
# How long a failed probe is trusted before the next run tries again.
UNAVAILABLE_RECHECK_SECONDS = 60.0
# How long to wait for the sandbox's last process to be gone once its command has ended.
REAP_TIMEOUT_SECONDS = 10.0

State = Literal["available", "unavailable", "disabled-unsafe"]


class SandboxUnavailable(Exception):
    """Generated code cannot be run: no sandbox works here and running it unsandboxed is not allowed."""


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox's settings (SANDBOX_*), hashable so that one probed Sandbox serves each configuration."""

    backend: Literal["bwrap", "none"] = "bwrap"
    allow_unsandboxed: bool = False
    cpu_seconds: int = 60
    memory_mb: int = 512
    max_processes: int = 64
    max_file_mb: int = 16
    scratch_mb: int = 256
    python: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxConfig:
        return cls(settings.sandbox_backend, settings.sandbox_allow_unsandboxed, settings.sandbox_cpu_seconds,
                   settings.sandbox_memory_mb, settings.sandbox_max_processes, settings.sandbox_max_file_mb,
                   settings.sandbox_scratch_mb, settings.sandbox_python)


@dataclass(frozen=True)
class SandboxStatus:
    """`available`: bubblewrap works; `unavailable`: it does not and code will not run;
    `disabled-unsafe`: code runs without a sandbox, as explicitly allowed."""

    state: State
    detail: str

    @property
    def usable(self) -> bool:
        return self.state != "unavailable"

    def describe(self) -> str:
        return f"{self.state} ({self.detail})"


@dataclass(frozen=True)
class SandboxResult:
    """How one run ended. `output` is the end of its combined stdout and stderr."""

    returncode: int | None
    output: str
    timed_out: bool
    killed_reason: str | None
    workdir: str
    sandboxed: bool
    duration_seconds: float
    limits_hit: tuple[str, ...] = field(default=())


# Messages the kernel's refusals produce in Python programs, and the limit each one points to.
_REFUSALS = (
    (re.compile(r"\bMemoryError\b|Cannot allocate memory"), "memory"),
    (re.compile(r"\[Errno 27\]|File too large"), "file_size"),
    (re.compile(r"\[Errno 28\]|No space left on device"), "scratch"),
    (re.compile(r"Resource temporarily unavailable|can't start new thread"), "processes"),
    (re.compile(r"Network is unreachable|Cannot assign requested address|"
                r"Temporary failure in name resolution|Name or service not known"), "network"),
    (re.compile(r"Read-only file system"), "read_only"),
)


class Sandbox:
    """Runs commands on a copy of a project, in bubblewrap with limits, or unsandboxed where allowed."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._probed: tuple[SandboxStatus, layout.Interpreter | None, float] | None = None
        self._bwrap = shutil.which("bwrap") or "/usr/bin/bwrap"
        self._prlimit = shutil.which("prlimit")
        # Sandboxed code never runs as host root, even mapped to another uid inside: root ignores
        # RLIMIT_NPROC, and a kernel escape would hand it the host. A root worker starts bubblewrap
        # as nobody instead (it then creates its namespaces as an unprivileged user).
        self._run_as = _nobody() if os.geteuid() == 0 else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox:
        """The sandbox these settings describe, shared per configuration so it is probed once."""
        return _shared(SandboxConfig.from_settings(settings))

    # -- state -----------------------------------------------------------------------------------

    def status(self) -> SandboxStatus:
        """Probe (once, then cached) whether a real sandbox runs here; never raises."""
        return self._probe()[0]

    def require(self) -> None:
        """Raise SandboxUnavailable unless generated code may run (sandboxed, or unsandboxed as allowed)."""
        status = self.status()
        if not status.usable:
            raise SandboxUnavailable(
                f"generated code was not run: no sandbox is available ({status.detail}); install bubblewrap and "
                "allow user namespaces, or set SANDBOX_ALLOW_UNSANDBOXED=true (development only)")

    @property
    def python(self) -> str:
        """The interpreter to name in argv: it exists at this path inside the sandbox too."""
        interpreter = self._probe()[1]
        if interpreter is None:
            self.require()
            raise SandboxUnavailable("no usable Python interpreter was found")
        return interpreter.path

    def _probe(self) -> tuple[SandboxStatus, layout.Interpreter | None, float]:
        with self._lock:
            cached = self._probed
            if cached and (cached[0].state == "available" or time.monotonic() - cached[2] < UNAVAILABLE_RECHECK_SECONDS):
                return cached
            status, interpreter = self._find_sandbox()
            if status.state != "available" and self.config.allow_unsandboxed:
                status = SandboxStatus("disabled-unsafe", f"{status.detail}; generated code runs without a sandbox "
                                                          "because SANDBOX_ALLOW_UNSANDBOXED=true")
                interpreter = interpreter or self._any_interpreter()
            level = logging.INFO if status.state == "available" else logging.WARNING
            logger.log(level, "sandbox %s", status.describe())
            self._probed = (status, interpreter, time.monotonic())
            return self._probed

    def _find_sandbox(self) -> tuple[SandboxStatus, layout.Interpreter | None]:
        if self.config.backend == "none":
            return SandboxStatus("unavailable", "SANDBOX_BACKEND=none"), None
        if not os.access(self._bwrap, os.X_OK):
            return SandboxStatus("unavailable", "bubblewrap (bwrap) is not installed"), None
        if self._prlimit is None:
            return SandboxStatus("unavailable", "prlimit (util-linux) is not installed"), None
        reasons = []
        for candidate in layout.interpreter_candidates(self.config.python):
            try:
                interpreter = layout.describe_interpreter(candidate)
                result = self._run_bwrap(interpreter, {}, [interpreter.path, "-c", "import sqlite3, unittest"],
                                         PROBE_TIMEOUT_SECONDS)
            except (OSError, ValueError, subprocess.SubprocessError, SandboxUnavailable) as error:
                reasons.append(f"{candidate}: {error}")
                continue
            if result.returncode == 0:
                if reasons:
                    logger.info("sandbox interpreters passed over: %s", "; ".join(reasons))
                who = f"uid {self._run_as[0]}" if self._run_as else f"uid {os.geteuid()}"
                return SandboxStatus("available", f"bwrap, Python {interpreter.version} at {interpreter.path}, "
                                                  f"as {who}"), interpreter
            reasons.append(f"{candidate}: {result.output.strip()[-300:] or f'exit status {result.returncode}'}")
        return SandboxStatus("unavailable", "; ".join(reasons)), None

    def _any_interpreter(self) -> layout.Interpreter | None:
        for candidate in layout.interpreter_candidates(self.config.python):
            try:
                return layout.describe_interpreter(candidate)
            except (OSError, ValueError, subprocess.SubprocessError):
                continue
        return None

    # -- running ---------------------------------------------------------------------------------

    def run(self, source: Mapping[str, str] | os.PathLike[str], argv: list[str], timeout: float) -> SandboxResult:
        """Copy `source` (files by relative path, or a directory) into a new sandbox and run `argv` in it."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        status, interpreter, _ = self._probe()
        if status.state == "available" and interpreter is not None:
            return self._run_bwrap(interpreter, source, argv, timeout)
        self.require()
        logger.warning("running generated code WITHOUT a sandbox: %s", status.detail)
        return self._run_unsandboxed(source, argv, timeout)

    def _rlimits(self, *, sandboxed: bool = True) -> list[str]:
        limits = self.config
        mib = 1024 * 1024
        if self._prlimit is None:
            return []
        # The soft CPU limit sends SIGXCPU (reported as such); the hard one, a second later, SIGKILL.
        command = [self._prlimit, f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
                   f"--as={limits.memory_mb * mib}", f"--fsize={limits.max_file_mb * mib}",
                   f"--nofile={MAX_OPEN_FILES}", "--core=0"]
        # RLIMIT_NPROC counts every process of the uid in its user namespace: per run inside a
        # sandbox, but all of the worker's own processes outside one.
        if sandboxed:
            command.append(f"--nproc={limits.max_processes}")
        return command + ["--"]

    def _run_bwrap(self, interpreter: layout.Interpreter, source, argv: list[str], timeout: float) -> SandboxResult:
        with process_.Staging(self._run_as) as staging:
            staging.fill(source, staging.path / "input")
            layout.write_etc(staging.path / "etc")
            (staging.path / "empty").mkdir(mode=0o755)
            env = _sandbox_env(layout.HOME, layout.TMP, interpreter.path)
            ready_r, ready_w = os.pipe()
            info_r, info_w = os.pipe()
            init = -1
            try:
                command = layout.bwrap_command(self._bwrap, interpreter, staging.path, env=env, info_fd=info_w,
                                               scratch_bytes=self.config.scratch_mb * 1024 * 1024,
                                               rlimits=self._rlimits(), argv=argv)
                process = staging.start(command, cwd=None, env={"PATH": "/usr/bin:/bin"}, stdin=ready_w,
                                        pass_fds=(info_w,))
                os.close(ready_w)
                os.close(info_w)
                ready_w = info_w = -1
                init = process_.namespace_init(info_r, timeout)
                finished = staging.finish(process, timeout, reaped=lambda: process_.wait_gone(init, REAP_TIMEOUT_SECONDS),
                                          kill_init=lambda: process_.kill_init(init))
                started = process_.read_nonblocking(ready_r) == b"1"
            finally:
                for fd in (ready_r, ready_w, info_r, info_w, init):
                    if fd >= 0:
                        os.close(fd)
        if not started and not finished.timed_out:
            raise SandboxUnavailable(f"the sandbox could not start: {finished.output.strip()[-300:]}")
        return self._result(finished, layout.PROJECT, sandboxed=True)

    def _run_unsandboxed(self, source, argv: list[str], timeout: float) -> SandboxResult:
        with process_.Staging(None) as staging:
            root, home, tmp = staging.path / "project", staging.path / "home", staging.path / "tmp"
            staging.fill(source, root)
            home.mkdir()
            tmp.mkdir()
            workdir = os.path.realpath(root)
            process = staging.start(self._rlimits(sandboxed=False) + list(argv), cwd=workdir, stdin=subprocess.DEVNULL,
                                    env=_sandbox_env(str(home), str(tmp), argv[0] if argv else ""))
            finished = staging.finish(process, timeout)
        return self._result(finished, workdir, sandboxed=False)

    def _result(self, finished: process_.Finished, workdir: str, *, sandboxed: bool) -> SandboxResult:
        code, hits = finished.returncode, []
        if code not in (0, None):
            hits = [limit for pattern, limit in _REFUSALS if pattern.search(finished.output)]
            # Output is a file too: a flood stops at the size limit, often before any error could be printed.
            if finished.output_bytes >= self.config.max_file_mb * 1024 * 1024:
                hits.append("file_size")
        reason = f"the wall-clock limit of {finished.timeout:g} s was reached" if finished.timed_out else None
        # bubblewrap reports a death by signal as 128 + the signal; a plain subprocess as minus it.
        signum = code - 128 if sandboxed and code and code > 128 else -code if code and code < 0 else None
        if reason is None and signum:
            reason = f"killed by {_signal_name(signum)}"
            if signum == signal.SIGXCPU:
                hits.insert(0, "cpu")
            elif signum == signal.SIGXFSZ:
                hits.insert(0, "file_size")
        return SandboxResult(code, finished.output, finished.timed_out, reason, workdir, sandboxed,
                             finished.duration_seconds, tuple(dict.fromkeys(hits)))

    def describe_limit(self, limit: str) -> str:
        """A phrase naming a limit that was hit, with its configured value."""
        c = self.config
        return {
            "cpu": f"the CPU time limit of {c.cpu_seconds} s was reached",
            "memory": f"the memory limit of {c.memory_mb} MB was reached",
            "processes": f"the limit of {c.max_processes} processes was reached",
            "file_size": f"the file size limit of {c.max_file_mb} MB was reached",
            "scratch": f"the scratch space of {c.scratch_mb} MB is full",
            "network": "the sandbox has no network",
            "read_only": "only the project's scratch directory is writable",
        }[limit]


def _sandbox_env(home: str, tmp: str, interpreter_path: str) -> dict[str, str]:
    # Built from nothing: no variable of the worker's reaches generated code.
    bin_dir = os.path.dirname(interpreter_path)
    path = ":".join(dict.fromkeys([bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]))
    return {
        "PATH": path, "HOME": home, "TMPDIR": tmp, "USER": layout.USER_NAME, "LOGNAME": layout.USER_NAME,
        "LANG": "C.UTF-8", "TZ": "UTC", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8", "PYTHONNOUSERSITE": "1",
    }


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


@lru_cache(maxsize=8)
def _shared(config: SandboxConfig) -> Sandbox:
    return Sandbox(config)
