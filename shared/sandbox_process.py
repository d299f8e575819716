"""The host side of one sandbox run: its private staging directory, launching, waiting and killing."""
from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SCANNED_OUTPUT_BYTES = 256 * 1024


class Staging:
    """A private host directory for one run: the input files, generated /etc, and the output log."""

    def __init__(self, run_as: tuple[int, int] | None) -> None:
        self.run_as = run_as

    def __enter__(self) -> Staging:
        self.path = Path(tempfile.mkdtemp(prefix="devora-sandbox-", dir=_memory_backed_dir()))
        # When bubblewrap runs as another user it must be able to reach the (unguessably named) directory.
        if self.run_as:
            self.path.chmod(0o711)
        return self

    def __exit__(self, *_exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def fill(self, source, target: Path) -> None:
        """Write `source` (relative path -> text or bytes, or a directory) under `target`, readable by all."""
        if isinstance(source, Mapping):
            target.mkdir(mode=0o755)
            for relative, content in source.items():
                parts = relative.split("/")
                if relative.startswith("/") or "\\" in relative or any(p in ("", ".", "..") for p in parts):
                    raise ValueError(f"unsafe file path {relative!r}")
                path = target.joinpath(*parts)
                path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
                path.write_bytes(data)
                path.chmod(0o644)
        else:
            # Read as files, so that a symbolic link cannot bring a host file along.
            root, files = Path(source), {}
            for path in sorted(Path(source).rglob("*")):
                if path.is_symlink():
                    raise ValueError(f"{path} is a symbolic link; the sandbox copies only plain files")
                if path.is_file():
                    files[path.relative_to(root).as_posix()] = path.read_bytes()
            self.fill(files, target)

    def start(self, command: list[str], *, cwd: str | None, env: dict[str, str], stdin, pass_fds=()) -> subprocess.Popen:
        self._log = open(self.path / "output.log", "wb")
        self._started = time.monotonic()
        as_user = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []} if self.run_as else {}
        try:
            # Its own session, so that a kill reaches everything it started.
            return subprocess.Popen(command, stdin=stdin, stdout=self._log, stderr=subprocess.STDOUT,
                                    pass_fds=pass_fds, env=env, cwd=cwd, start_new_session=True, **as_user)
        except BaseException:
            self._log.close()
            raise

    def finish(self, process: subprocess.Popen, timeout: float, reaped=None, kill_init=None) -> Finished:
        try:
            try:
                returncode: int | None = _wait(process, timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                if kill_init is not None:
                    kill_init()
                _kill_group(process)
                returncode, timed_out = None, True
            # bubblewrap exits as soon as its command does, while its namespace is still being torn
            # down: wait until that is over, so that nothing of the run outlives it.
            if reaped is not None and not reaped():
                _kill_group(process)
        finally:
            self._log.close()
        log = self.path / "output.log"
        return Finished(returncode, _tail(log), log.stat().st_size, timed_out, timeout,
                         round(time.monotonic() - self._started, 3))


def _memory_backed_dir() -> str | None:
    # Writing and deleting a project's files costs tens of milliseconds on some disks and well
    # under one on tmpfs; None means the default temporary directory.
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


@dataclass(frozen=True)
class Finished:
    """How a launched process ended, and the end of what it wrote."""

    returncode: int | None
    output: str
    output_bytes: int
    timed_out: bool
    timeout: float
    duration_seconds: float


def _wait(process: subprocess.Popen, timeout: float) -> int:
    # Popen.wait(timeout) polls with growing sleeps, which adds up to half a short run's time; a
    # pidfd wakes up the moment the process ends.
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        return process.wait(timeout=timeout)
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(process.args, timeout)
    finally:
        os.close(pidfd)
    return process.wait()


def _kill_group(process: subprocess.Popen) -> None:
    # Killing bubblewrap also takes its PID namespace down (--die-with-parent on the namespace's
    # first process); the group kill is what reaches everything the unsandboxed runner started.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def namespace_init(info_fd: int, timeout: float) -> int:
    """A pidfd of the sandbox's first process (PID 1 of its namespace), from bubblewrap's --info-fd; -1 if gone."""
    data, deadline = b"", time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and select.select([info_fd], [], [], left)[0]:
        chunk = os.read(info_fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        return os.pidfd_open(json.loads(data)["child-pid"])
    except (ValueError, KeyError, OSError):
        return -1  # it never started, or has already ended and been reaped


def kill_init(init_pidfd: int) -> None:
    # Killing the namespace's first process kills the whole namespace; the pidfd cannot hit a reused PID.
    if init_pidfd >= 0:
        try:
            signal.pidfd_send_signal(init_pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_gone(init_pidfd: int, timeout: float) -> bool:
    # The kernel tears a PID namespace down, killing every process in it, before its first process
    # counts as exited: once that pidfd is readable, nothing of the run is left.
    if init_pidfd < 0 or select.select([init_pidfd], [], [], timeout)[0]:
        return True
    logger.error("a sandbox was still alive %.0f s after its command ended", timeout)
    return False


def read_nonblocking(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 16)
    except BlockingIOError:
        return b""


def _tail(log_path: Path) -> str:
    # Only the end is read: runaway output must not exhaust the worker's memory.
    with open(log_path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - SCANNED_OUTPUT_BYTES))
        return handle.read().decode("utf-8", errors="replace")
