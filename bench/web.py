"""Web benchmark: the service beside the bare Flask anchor, same Redis, same client, same run.

    python bench/web.py [--seconds 10] [--rounds 2]

Prints requests/s and the ratio service/anchor for:
  - authenticated, cached GET /api/v2/projects (a user with 100 projects) vs the anchor's /cached
  - GET /api/v2/auth/me vs the anchor's /hello
Needs wrk on PATH and ../shared/anchors (or ANCHORS_DIR).
"""
from __future__ import annotations

import argparse
import statistics
import uuid
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ANCHORS, ROOT, embedded_redis, gunicorn, wrk  # noqa: E402
from tests.peers.processes import free_port, serve  # noqa: E402


def seed(database_url: str, redis_url: str) -> str:
    """Migrate, create a user with 100 projects, return a bearer token."""
    from cli import upgrade_database
    from shared import accounts, projects
    from shared.db import Database
    from shared.security import TokenService
    from shared.settings import Settings
    import os

    os.environ["DATABASE_URL"] = database_url
    upgrade_database()
    settings = Settings(database_url=database_url, redis_url=redis_url, _env_file=None)
    db = Database(settings)
    with db.transaction() as session:
        user = accounts.register(session, "bench@example.com", "Bench-pass-1", "Bench")
        for i in range(100):
            projects.create_project(session, user.id, f"project-{i:03d}", "benchmark project")
        token = TokenService(settings).issue(user.id, user.role, uuid.uuid4())  # a login never logged out
    db.engine.dispose()
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, embedded_redis() as redis_url:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.db"
        token = seed(database_url, redis_url)
        app_port, anchor_port = free_port(), free_port()
        app_env = {"REDIS_URL": f"{redis_url}/0", "DATABASE_URL": database_url, "DEVORA_ENV": "development",
                   "RATELIMIT_DEFAULT": "10000000 per minute", "LOG_LEVEL": "WARNING"}
        anchor_env = {"ANCHOR_REDIS_URL": f"{redis_url}/14"}
        app_url, anchor_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{anchor_port}"
        auth = {"Authorization": f"Bearer {token}"}
        pairs = [
            ("cached project list (100 projects)", f"{app_url}/api/v2/projects", auth, f"{anchor_url}/cached"),
            ("GET /auth/me", f"{app_url}/api/v2/auth/me", auth, f"{anchor_url}/hello"),
        ]
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in pairs}
        with serve(gunicorn("web:create_app()", app_port), app_env, ROOT, f"{app_url}/healthz"), \
                serve(gunicorn("bare_web:app", anchor_port), anchor_env, ANCHORS, f"{anchor_url}/hello"):
            for _name, ours, headers, anchor in pairs:  # warm caches and connections
                wrk(ours, seconds=1, headers=headers)
                wrk(anchor, seconds=1)
            for _ in range(args.rounds):
                for name, ours, headers, anchor in pairs:
                    results[name].append((wrk(ours, seconds=args.seconds, headers=headers),
                                          wrk(anchor, seconds=args.seconds)))

    print(f"{'measure':40} {'service req/s':>14} {'anchor req/s':>13} {'ratio':>6}")
    for name, runs in results.items():
        ours = statistics.median(r[0] for r in runs)
        anchor = statistics.median(r[1] for r in runs)
        print(f"{name:40} {ours:14.0f} {anchor:13.0f} {ours / anchor:6.2f}")


if __name__ == "__main__":
    main()
