"""Run localstripe on loopback in a child process, isolated from any other localstripe."""
from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.peers.processes import answers, running

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

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

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


@contextmanager
def start_localstripe(startup_timeout: float = 15.0) -> Iterator[LocalStripe]:
    """Run localstripe on 127.0.0.1 with a free port until the block ends, once it answers."""
    with tempfile.TemporaryDirectory(prefix="devora-localstripe-") as workdir, socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        argv = [sys.executable, "-c", _CHILD_PRELUDE, str(listener.fileno()), str(Path(workdir) / "localstripe.pickle")]
        # An unauthenticated page with no side effects: GET /v1/balance, for one, emits a
        # balance.available event that a webhook test would then receive.
        with running(argv, {}, workdir, lambda: answers(f"{url}/js.stripe.com/v3/"), startup_timeout,
                     pass_fds=(listener.fileno(),)) as process:
            listener.close()  # the child serves on its own copy
            yield LocalStripe(process, url)
