"""Run localstripe on loopback in a child process, isolated from any other localstripe."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import requests

# localstripe pickles its whole store to the fixed path /tmp/localstripe.pickle on every
# write, so two instances (or a developer's own one) would overwrite each other's state.
# This prelude runs only inside the child: it points persistence at a private file and
# never loads old state. The listening socket is bound by the parent and inherited, so the
# port cannot be taken between choosing it and serving on it.
_CHILD_PRELUDE = """
import pickle, socket, sys
from aiohttp import web
from localstripe import resources, server

state_path = sys.argv[2]

def dump_to_disk(self):
    with open(state_path, "wb") as f:
        pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)

def try_load_from_disk(self):
    pass

for name in ("dump_to_disk", "try_load_from_disk"):
    if not hasattr(resources.Store, name):
        sys.exit("localstripe changed: Store.%s is gone, the pickle isolation needs updating" % name)
resources.Store.dump_to_disk = dump_to_disk
resources.Store.try_load_from_disk = try_load_from_disk

listener = socket.socket(fileno=int(sys.argv[1]))
web.run_app(server.app, sock=listener, print=None, access_log=None, shutdown_timeout=1)
"""

class LocalStripe:
    """A running localstripe child process; `url` is its API base."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, workdir: Path) -> None:
        self.process = process
        self.url = url
        self.workdir = workdir

    def register_webhook(self, endpoint_id: str, url: str, secret: str,
                         events: Iterable[str] | None = None) -> None:
        """Ask localstripe to POST signed events to `url` (all events unless `events` is given)."""
        body: dict[str, object] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = list(events)
        # JSON rather than form fields: localstripe accepts both, and only JSON can carry
        # the empty event list that `mute_webhook` relies on.
        response = requests.post(f"{self.url}/_config/webhooks/{endpoint_id}", json=body, timeout=5)
        response.raise_for_status()

    def mute_webhook(self, endpoint_id: str, url: str, secret: str) -> None:
        """Stop deliveries to an endpoint: localstripe cannot delete one, so filter out every event."""
        self.register_webhook(endpoint_id, url, secret, events=[])

    def reset(self) -> None:
        """Drop every stored object (webhook registrations survive; deliveries already queued still fire)."""
        requests.delete(f"{self.url}/_config/data", timeout=5).raise_for_status()

    def stop(self) -> None:
        """Terminate the child this object started and remove its private state directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalStripe:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_localstripe(startup_timeout: float = 15.0) -> LocalStripe:
    """Start localstripe on 127.0.0.1 with a free port and wait until it answers."""
    workdir = Path(tempfile.mkdtemp(prefix="devora-localstripe-"))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        log = open(workdir / "localstripe.log", "wb")
        with log:
            process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_PRELUDE, str(listener.fileno()),
                 str(workdir / "localstripe.pickle")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),), cwd=workdir,
            )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        listener.close()
    peer = LocalStripe(process, f"http://127.0.0.1:{port}", workdir)
    try:
        _wait_until_ready(peer, startup_timeout)
    except BaseException:
        peer.stop()
        raise
    return peer


def _wait_until_ready(peer: LocalStripe, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if peer.process.poll() is not None:
            output = (peer.workdir / "localstripe.log").read_text(errors="replace")
            raise RuntimeError(f"localstripe exited with {peer.process.returncode}:\n{output[-2000:]}")
        try:
            # An unauthenticated page with no side effects: GET /v1/balance, for one, emits
            # a balance.available event that a webhook test would then receive.
            response = requests.get(f"{peer.url}/js.stripe.com/v3/", timeout=1)
            if response.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"localstripe did not answer on {peer.url} within {timeout} s")
        time.sleep(0.05)

