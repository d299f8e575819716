"""What a bubblewrap sandbox sees: the interpreter it runs, the host paths it may read, its command line.

Inside, the process runs as an unprivileged uid in fresh user, PID, network, IPC, UTS and cgroup
namespaces. Its filesystem is an empty read-only root holding /usr (and the merged-usr links next to
it), the interpreter's own prefix when that lives elsewhere, a few generated /etc files, the project
read-only at /input, and one size-limited tmpfs at /scratch: the only writable place.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

INPUT = "/input"
SCRATCH = "/scratch"
PROJECT = f"{SCRATCH}/project"
HOME = f"{SCRATCH}/home"
TMP = f"{SCRATCH}/tmp"
USER_ID = 1000
USER_NAME = "sandbox"
# The host directories a Python needs; each is bound read-only, or recreated as the same symlink.
SYSTEM_ROOTS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Common places of a system interpreter, tried after the worker's own (see `interpreter_candidates`).
SYSTEM_PYTHONS = ("/usr/local/bin/python3", "/usr/bin/python3")

_DESCRIBE = (
    "import json, site, sys; print(json.dumps({'version': sys.version.split()[0],"
    " 'prefixes': sorted({sys.base_prefix, sys.base_exec_prefix}), 'site': site.getsitepackages()}))"
)


@dataclass(frozen=True)
class Interpreter:
    """A Python interpreter, the prefixes it needs read access to, and its site-packages to hide."""

    path: str
    version: str
    prefixes: tuple[str, ...]
    site_dirs: tuple[str, ...]


def interpreter_candidates(explicit: str | None) -> list[str]:
    """The configured interpreter, else the worker's own base interpreter (never its virtualenv), then system ones."""
    if explicit:
        return [explicit]
    own = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return list(dict.fromkeys([own, *SYSTEM_PYTHONS]))


def describe_interpreter(path: str) -> Interpreter:
    """Ask an interpreter (a trusted system binary, run outside any sandbox) where it lives."""
    real = os.path.realpath(path)
    completed = subprocess.run([real, "-I", "-c", _DESCRIBE], capture_output=True, text=True, timeout=30,
                               env={"PATH": os.defpath}, stdin=subprocess.DEVNULL)
    if completed.returncode != 0:
        raise OSError(f"{real} does not run: {completed.stderr.strip()[-200:] or completed.returncode}")
    facts = json.loads(completed.stdout)
    return Interpreter(real, facts["version"], tuple(facts["prefixes"]),
                       tuple(site for site in facts["site"] if os.path.isdir(site)))


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _system_mounts() -> list[str]:
    args: list[str] = []
    for root in SYSTEM_ROOTS:
        if os.path.islink(root):
            args += ["--symlink", os.readlink(root), root]
        elif os.path.isdir(root):
            args += ["--ro-bind", root, root]
    return args


def write_etc(directory: Path) -> None:
    """The few /etc files a Python program expects: who it is, where localhost is, no DNS."""
    directory.mkdir(mode=0o755)
    files = {
        "passwd": f"{USER_NAME}:x:{USER_ID}:{USER_ID}::{HOME}:/usr/sbin/nologin\n",
        "group": f"{USER_NAME}:x:{USER_ID}:\n",
        "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o644)


def bwrap_command(
    bwrap: str,
    interpreter: Interpreter,
    staging: Path,
    *,
    scratch_bytes: int,
    rlimits: list[str],
    env: dict[str, str],
    info_fd: int,
    argv: list[str],
) -> list[str]:
    """The full command line: namespaces, mounts, environment, then limits and the copy into scratch."""
    command = [
        bwrap,
        "--unshare-all", "--unshare-user", "--disable-userns",
        "--uid", str(USER_ID), "--gid", str(USER_ID), "--hostname", USER_NAME,
        "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
    ]
    for key, value in env.items():
        command += ["--setenv", key, value]
    command += _system_mounts()
    for prefix in interpreter.prefixes:
        if not _under(prefix, SYSTEM_ROOTS):
            command += ["--ro-bind", prefix, prefix]
    # Installed packages (ours among them, in an image) are no business of generated code.
    for site in interpreter.site_dirs:
        command += ["--ro-bind", str(staging / "empty"), site]
    for name in ("passwd", "group", "hosts", "nsswitch.conf"):
        command += ["--ro-bind", str(staging / "etc" / name), f"/etc/{name}"]
    command += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    command += [
        "--ro-bind", str(staging / "input"), INPUT,
        "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
        "--size", str(scratch_bytes), "--tmpfs", SCRATCH,
        "--dir", PROJECT, "--dir", HOME, "--dir", TMP, "--chdir", PROJECT,
        "--info-fd", str(info_fd),
        "--remount-ro", "/",
        "--",
        *rlimits,
        # Standard input is a pipe on which the shell says it started (so a failure to build the
        # sandbox is told apart from the program's own); it then swaps in /dev/null, copies the
        # project into scratch and becomes argv.
        "/bin/sh", "-c", f'printf 1 >&0 && exec 0</dev/null && cp -R {INPUT}/. . && exec "$@"', "sh",
        *argv,
    ]
    return command
