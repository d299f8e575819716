"""Child processes for tests and benchmarks: a free loopback port, a server started and awaited, and stopped;
and `wait_until`, the one polling wait that tests and benchmarks share."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import IO, TypeVar

import requests

T = TypeVar("T")


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str, body: str | None = None) -> bool:
    """Whether `url` answers without a server error (and with exactly `body`, when given)."""
    try:
        response = requests.get(url, timeout=1)
    except requests.RequestException:
        return False
    return response.status_code < 500 and (body is None or response.text == body)


def wait_until(predicate: Callable[[], T], what: str | Callable[[], str], timeout: float = 30.0) -> T:
    """The predicate's first true result; `what` (text, or a callable giving it) names what timed out.

    An exception from the predicate ends the wait at once (say, for a process that exited).
    """
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.05)
    return result


def stop_process_group(process: subprocess.Popen, stop_signal: int = signal.SIGTERM, *, whole_group: bool = False,
                       timeout: float = 20) -> None:
    """Send `stop_signal` to a process started in its own session (or its whole group), then kill the group."""
    # SIGTERM to the leader alone is the warm shutdown of gunicorn and Celery (children finish what
    # they hold); SIGINT to the whole group is a terminal's Ctrl-C. The leader may have exited (and
    # been reaped) while its children live on, so the group is killed once the leader is gone or
    # after `timeout` seconds.
    with suppress(ProcessLookupError):
        (os.killpg if whole_group else os.kill)(process.pid, stop_signal)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def running(argv: list[str], env: Mapping[str, str | None], cwd: Path | str, ready: Callable[[], bool] | None = None,
            timeout: float = 60, *, log: Path | None = None, stop_signal: int = signal.SIGTERM,
            whole_group: bool = False, pass_fds: tuple[int, ...] = ()) -> Iterator[subprocess.Popen]:
    """Run a process in its own session until the block ends, once `ready()` is true; see stop_process_group."""
    # `env` is laid over this process's environment; None removes a variable. Output goes to a file
    # (`log`, or a temporary one), not a pipe nobody reads, so a chatty process can never block on
    # it; its end is shown when the process does not start or the block fails.
    environment = {**os.environ, **env}
    environment = {name: value for name, value in environment.items() if value is not None}
    with (open(log, "w+b") if log else tempfile.TemporaryFile()) as output:
        process = subprocess.Popen(argv, cwd=cwd, env=environment, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, pass_fds=pass_fds, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while ready is not None and not ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    state = "exited" if process.poll() is not None else f"did not answer within {timeout:g} s"
                    raise RuntimeError(f"{Path(argv[0]).name} {state}; its output ends:\n{_tail(output)}")
                time.sleep(0.1)
            try:
                yield process
            except Exception:
                # Whatever failed in the block, the process's own log often says why.
                if tail := _tail(output):
                    print(f"--- end of the output of {Path(argv[0]).name} {' '.join(argv[1:3])}:\n{tail}",
                          file=sys.stderr)
                raise
        finally:
            stop_process_group(process, stop_signal, whole_group=whole_group)


def serve(argv: list[str], env: Mapping[str, str | None], cwd: Path | str, health_url: str,
          **options) -> AbstractContextManager[subprocess.Popen]:
    """`running` a server until `health_url` answers; `options` as for `running`."""
    return running(argv, env, cwd, lambda: answers(health_url), **options)


def _tail(output: IO[bytes], size: int = 3000) -> str:
    # pread leaves the file offset alone: the child shares it and goes on writing there.
    end = os.fstat(output.fileno()).st_size
    return os.pread(output.fileno(), min(size, end), max(0, end - size)).decode(errors="replace")


class ThreadedPeer:
    """An HTTP peer served from a thread of the test process: `with Peer() as peer:`, at `peer.url`.

    Subclasses pass their request handler class; `self._stopping` is set on stop so answers
    still waiting in a scripted delay are cut short.
    """

    def __init__(self, handler: type, name: str) -> None:
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # A short poll interval because shutdown() waits up to one interval: 0.5 s by default,
        # paid by every test that uses a fresh peer.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=name, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self):
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()
