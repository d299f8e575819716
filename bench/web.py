"""Web benchmark: the account and the cached project list beside the same-work anchor, same Redis, same run.

    python bench/web.py [--seconds 10] [--rounds 3] [--database-url URL]

The service and ../shared/anchors/bare_api.py (its poll: a JWT, one Flask-Limiter limit, one SELECT) run
under gunicorn with 2 workers each on one embedded Redis and the same kind of database; bare_web.py
(/hello, /limited) beside them. wrk -t2 -c16 measures, round after round, each path in turn:
  GET /api/v2/auth/me                                     against bare_api's GET /jobs/{id} (200)
  GET /api/v2/projects, cached (a user with 100 projects) against bare_api's GET /jobs/{id} (200)
and both against bare_web's /hello and /limited. Prints every round's ratios and the overall ones (medians
of the rounds), then absolute requests/s. Exits 1 when a correctness check fails (an answer that is not
the seeded user's, a list without its 100 projects), not when an aim is missed.
A --database-url names a PostgreSQL database that must not exist yet: it is created and dropped here.
Needs wrk on PATH and ../shared/anchors (or ANCHORS_DIR).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    ANCHORS, ROOT, Checks, Figures, anchor_database, bare_api, embedded_redis, fresh_database, gunicorn, wrk,
)
from tests.peers.processes import free_port, serve  # noqa: E402

EMAIL = "bench@example.com"
PROJECTS = 100


def seed(database_url: str, redis_url: str) -> str:
    """Migrate, create a user with 100 projects, return a bearer token."""
    from cli import upgrade_database
    from shared import accounts, projects
    from shared.db import Database
    from shared.security import TokenService
    from shared.settings import Settings

    os.environ["DATABASE_URL"] = database_url
    upgrade_database()
    settings = Settings(database_url=database_url, redis_url=redis_url, _env_file=None)
    db = Database(settings)
    with db.transaction() as session:
        user = accounts.register(session, EMAIL, "Bench-pass-1", "Bench")
        for i in range(PROJECTS):
            projects.create_project(session, user.id, f"project-{i:03d}", "benchmark project")
        token = TokenService(settings).issue(user.id, user.role, uuid.uuid4())  # a login never logged out
    db.engine.dispose()
    return token


def check_answers(app_url: str, headers: dict[str, str], checks: Checks) -> None:
    """What the measured paths answer is what they must answer (before and after the load)."""
    me = requests.get(f"{app_url}/api/v2/auth/me", headers=headers, timeout=10)
    checks.expect(me.status_code == 200 and me.json().get("email") == EMAIL,
                  f"/auth/me answered {me.status_code}: {me.text[:200]}")
    listed = requests.get(f"{app_url}/api/v2/projects", headers=headers, timeout=10)
    checks.expect(listed.status_code == 200 and listed.json().get("total") == PROJECTS,
                  f"the project list answered {listed.status_code}: {listed.text[:200]}")
    checks.expect("RateLimit" in me.headers and "X-RateLimit-Remaining" in listed.headers,
                  "a measured answer carries no rate-limit headers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()

    checks, figures = Checks(), Figures()
    with tempfile.TemporaryDirectory() as tmp, embedded_redis() as redis_url, \
            fresh_database(args.database_url, tmp) as database_url, anchor_database(database_url, tmp) as anchor_db:
        token = seed(database_url, f"{redis_url}/0")
        app_port, web_port = free_port(), free_port()
        app_env = {"REDIS_URL": f"{redis_url}/0", "DATABASE_URL": database_url, "DEVORA_ENV": "development",
                   "RATELIMIT_DEFAULT": "10000000 per minute", "LOG_LEVEL": "WARNING",
                   "PROMETHEUS_MULTIPROC_DIR": f"{tmp}/metrics"}
        app_url, web_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{web_port}"
        auth = {"Authorization": f"Bearer {token}"}
        with serve(gunicorn("web:create_app()", app_port), app_env, ROOT, f"{app_url}/healthz"), \
                serve(gunicorn("bare_web:app", web_port), {"ANCHOR_REDIS_URL": f"{redis_url}/14"}, ANCHORS,
                      f"{web_url}/hello"), \
                bare_api(redis_url, anchor_db) as anchor:
            check_answers(app_url, auth, checks)
            paths = [("GET /auth/me", f"{app_url}/api/v2/auth/me", auth),
                     ("bare_api poll 200", anchor.poll_url, anchor.headers),
                     ("GET /projects (cached)", f"{app_url}/api/v2/projects", auth),
                     ("bare_web /hello", f"{web_url}/hello", {}),
                     ("bare_web /limited", f"{web_url}/limited", {})]
            for _name, url, headers in paths:  # warm caches, pools and connections
                wrk(url, seconds=1, headers=headers)
            for _ in range(args.rounds):
                measured = figures.new_round()
                for name, url, headers in paths:
                    measured[name] = wrk(url, seconds=args.seconds, headers=headers)
            check_answers(app_url, auth, checks)

    print(f"wrk -t2 -c16 -d{args.seconds}s, {args.rounds} rounds; gunicorn -w 2 for the service and the anchors; "
          f"{'PostgreSQL' if args.database_url else 'SQLite'}")
    figures.print_table([
        ("/auth/me / bare_api poll 200", "GET /auth/me", "bare_api poll 200", ">= 1.3"),
        ("cached project list / bare_api poll 200", "GET /projects (cached)", "bare_api poll 200", ">= 1.3"),
        ("/auth/me / /hello", "GET /auth/me", "bare_web /hello", ""),
        ("/auth/me / /limited", "GET /auth/me", "bare_web /limited", ""),
        ("cached project list / /hello", "GET /projects (cached)", "bare_web /hello", ""),
        ("cached project list / /limited", "GET /projects (cached)", "bare_web /limited", ""),
    ])
    print()
    figures.print_absolute([name for name, *_ in paths])
    checks.finish()


if __name__ == "__main__":
    main()
