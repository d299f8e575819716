"""Schemathesis's own CLI, with every check, against the service as it runs: as two users and as an admin.

The service is tests/e2e/fuzz_service.py's: gunicorn on SQLite and an embedded Redis, billing on
the Stripe stub, rate limits off, and the identities of schemathesis-auth.json, which schemathesis
logs in through POST /api/v2/auth/login. One run per identity goes through every phase (examples,
coverage, fuzzing, stateful; valid and invalid data) with `--checks all`; the two users are
`peers` (schemathesis.toml), so each run also replays a user's reads of its own objects as the
other user (object_level_authorization). docs/OPERATIONS.md ("API fuzzing") gives the same
commands by hand.

No operation is excluded, since none the fuzzer can reach locks an identity out: logout revokes
only the login whose refresh token it is sent, and the fuzzer never sees the identities' own (their
logins are not test cases); no operation deactivates or demotes an account.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.settings import PROJECT_ROOT
from tests.e2e.fuzz_service import fuzz_service

ST = Path(sys.executable).parent / "st"
CONFIG = Path(__file__).with_name("schemathesis.toml")
# Bounded so that the three runs take about two and a half minutes on two cores; a fixed seed per
# identity makes a failure reproducible (run again with the same --seed).
MAX_EXAMPLES = 10
SEEDS = {"alice": 1, "bob": 2, "admin": 3}
RUN_TIMEOUT = 240


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with fuzz_service(tmp_path_factory.mktemp("fuzz")) as url:
        yield url


@pytest.mark.parametrize("identity", list(SEEDS))
def test_schemathesis_finds_nothing_with_every_check(service, identity):
    command = [str(ST), "--config-file", str(CONFIG), "run", f"{service}/api/v2/openapi.json",
               "--auth-wfc-user", identity, "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
               "--seed", str(SEEDS[identity]), "--generation-database", "none", "--no-color",
               "--request-timeout", "30"]
    started = time.monotonic()
    # From the checkout's root, where the config's paths start.
    run = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    output = run.stdout + run.stderr
    assert run.returncode == 0, (f"schemathesis as {identity} exited {run.returncode} after "
                                 f"{time.monotonic() - started:.0f} s:\n{output}")
    # Every operation was tested: none was filtered out, or left out for a schema it cannot read.
    counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert counts and len(set(counts.groups())) == 1, output
