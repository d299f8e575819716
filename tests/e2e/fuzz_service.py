"""The service as API fuzzing runs against it, with its identities: `python -m tests.e2e.fuzz_service`.

gunicorn serves `web:create_app()` on a fresh SQLite database and an embedded Redis, billing
talks to the Stripe stub, and rate limits are off (they would turn most generated requests into
429s). The users of schemathesis-auth.json register through the API and its admin is made with
`devora users create --admin`, so that schemathesis can log each in. tests/e2e/test_schemathesis_cli.py
runs schemathesis against it; docs/OPERATIONS.md ("API fuzzing") does so by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from shared.settings import PROJECT_ROOT
from tests.conftest import migrate, start_valkey
from tests.peers.processes import free_port, serve
from tests.peers.stripe_events import API_KEY, WEBHOOK_SECRET
from tests.peers.stripe_stub import StripeStub

BIN = Path(sys.executable).parent
# The identities and how they log in, as schemathesis reads them (tests/e2e/schemathesis.toml names the file).
AUTH = json.loads(Path(__file__).with_name("schemathesis-auth.json").read_text())
PASSWORD = AUTH["authTemplate"]["loginEndpointAuth"]["payloadUserPwd"]["password"]
EMAILS = {entry["name"]: entry["loginEndpointAuth"]["payloadUserPwd"]["username"] for entry in AUTH["auth"]}
ADMIN = "admin"


@contextmanager
def fuzz_service(work: Path, port: int | None = None) -> Iterator[str]:
    """Run the service with its identities, keeping its files in `work`; yields its URL."""
    database_url = f"sqlite:///{work / 'devora.db'}"
    migrate(database_url)
    redis = start_valkey()
    try:
        with StripeStub() as stripe:
            for price in ("price_pro_monthly", "price_team_monthly"):
                stripe.add_price(price)
            env = {"DEVORA_ENV": "test", "DATABASE_URL": database_url, "REDIS_URL": redis.connection_url + "/0",
                   "SECRET_KEY": "fuzzing-" + "x" * 32, "RATELIMIT_ENABLED": "false",
                   # Schemathesis logs in again every 5 minutes; no token may expire before.
                   "ACCESS_TOKEN_TTL_SECONDS": "86400",
                   "PLAN_FREE_CONCURRENT_JOBS": "100000", "PLAN_FREE_MONTHLY_GENERATIONS": "100000",
                   "STRIPE_API_KEY": API_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                   "STRIPE_API_BASE": stripe.url, "STRIPE_MAX_NETWORK_RETRIES": "0",
                   "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"), "LOG_LEVEL": "WARNING"}
            port = port or free_port()
            url = f"http://127.0.0.1:{port}"
            with serve([str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "web:create_app()"], env,
                       PROJECT_ROOT, f"{url}/healthz", log=work / "gunicorn.log"):
                for name, email in EMAILS.items():
                    if name == ADMIN:
                        subprocess.run([str(BIN / "devora"), "users", "create", email, "--admin",
                                        "--password", PASSWORD], env={**os.environ, **env}, cwd=PROJECT_ROOT,
                                       check=True, capture_output=True, timeout=60)
                    else:
                        registered = requests.post(f"{url}/api/v2/auth/register",
                                                   json={"email": email, "password": PASSWORD}, timeout=10)
                        registered.raise_for_status()
                yield url
    finally:
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    arguments = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="devora-fuzz-") as work, fuzz_service(Path(work), arguments.port) as url:
        print(f"serving {url} as {', '.join(EMAILS)} (password {PASSWORD}); Ctrl-C stops it", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
