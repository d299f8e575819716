"""What the fast polls, account reads and submissions still guarantee: exact limits and their headers in
one Redis round trip, fresh polls, accounts refused at once, and exact plan quotas under concurrency."""
from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
import redis
from sqlalchemy import delete, func, select

from shared import projects
from shared.jobs import lifecycle
from shared.jobs.lifecycle import Progress
from shared.jobs.states import JobStatus
from shared.models import Job, MonthlyUsage, User
from tests.jobs_helpers import SMALL_SPEC, new_project, submit

LIMIT = 5


@pytest.fixture
def settings_overrides():
    return {"ratelimit_default": f"{LIMIT} per minute"}


def test_a_per_user_limit_holds_exactly_with_its_headers_on_every_answer(client, make_user):
    _, headers = make_user()
    answers = [client.get("/api/v2/auth/me", headers=headers) for _ in range(LIMIT + 1)]
    assert [a.status_code for a in answers] == [200] * LIMIT + [429]
    for sent, answer in enumerate(answers[:LIMIT], 1):
        left = LIMIT - sent
        assert answer.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert answer.headers["X-RateLimit-Remaining"] == str(left)
        assert -1 <= int(answer.headers["X-RateLimit-Reset"]) - time.time() <= 61
        assert answer.headers["RateLimit-Policy"] == f'"default";q={LIMIT};w=60'
        assert re.fullmatch(rf'"default";r={left};t=\d+', answer.headers["RateLimit"])
        assert "Retry-After" not in answer.headers
    refused = answers[-1]
    assert refused.content_type == "application/problem+json"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert re.fullmatch(r'"default";r=0;t=\d+', refused.headers["RateLimit"])


def commands_sent(redis_url: str, action) -> list[str]:
    """The commands clients sent to Redis while `action` ran (not those its Lua scripts ran)."""
    server, marking = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    marking.ping()  # connected before the watch begins: its handshake is not counted
    marker, seen, watching = f"end-{uuid.uuid4().hex}", [], threading.Event()

    def watch() -> None:
        with server.monitor() as monitor:
            watching.set()
            for command in monitor.listen():
                if marker in command["command"]:
                    return
                if command.get("client_type") != "lua":
                    seen.append(command["command"])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    watching.wait(10)
    action()
    marking.echo(marker)
    watcher.join(10)
    return seen


def test_a_limit_and_its_headers_cost_one_redis_round_trip(client, make_user, redis_url):
    _, headers = make_user()
    client.get("/api/v2/auth/me", headers=headers)  # the limiter's script is loaded once per process
    answers = []
    sent = commands_sent(redis_url, lambda: answers.extend(client.get("/api/v2/auth/me", headers=headers)
                                                           for _ in range(3)))
    assert [command.split()[0].upper() for command in sent] == ["EVALSHA"] * 3
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == [str(LIMIT - n) for n in (2, 3, 4)]


@pytest.mark.parametrize("settings_overrides", [{"ratelimit_default": "10000 per minute"}])
def test_a_repeated_cached_list_costs_only_the_limit_and_a_change_from_elsewhere_shows_at_once(
        client, make_user, db, redis_url):
    user, headers = make_user()
    first = client.get("/api/v2/projects", headers=headers)
    assert first.status_code == 200 and first.get_json()["total"] == 0
    again = []
    sent = commands_sent(redis_url, lambda: again.extend(client.get("/api/v2/projects", headers=headers)
                                                         for _ in range(3)))
    assert [command.split()[0].upper() for command in sent] == ["EVALSHA"] * 3, "served from this process"
    assert all(a.get_json() == first.get_json() for a in again)
    # Written as a worker or another web process would, past this process's cache.
    with db.transaction() as session:
        projects.create_project(session, user.id, "made elsewhere", None)
    listed = client.get("/api/v2/projects", headers=headers).get_json()
    assert listed["total"] == 1 and listed["items"][0]["name"] == "made elsewhere"


@pytest.mark.parametrize("settings_overrides", [{"ratelimit_default": "10000 per minute"}])
def test_a_poll_right_after_a_change_is_never_a_stale_304_or_body(client, auth_headers, db):
    job_id = submit(client, auth_headers, new_project(client, auth_headers)).get_json()["id"]
    with db.transaction() as session:
        claim = lifecycle.claim_job(session, uuid.UUID(job_id), "test-worker", 60)
    etag = client.get(f"/api/v2/jobs/{job_id}", headers=auth_headers).headers["ETag"]
    for percent in range(1, 41):
        with db.transaction() as session:
            lifecycle.renew_lease(session, claim, 60, Progress(percent, "generate", f"step {percent}"))
        polled = client.get(f"/api/v2/jobs/{job_id}", headers={**auth_headers, "If-None-Match": etag})
        assert polled.status_code == 200, f"a stale 304 after change {percent}"
        assert polled.get_json()["progress"] == {"percent": percent, "stage": "generate",
                                                 "detail": f"step {percent}", "tokens": 0}
        assert polled.headers["ETag"] != etag
        etag = polled.headers["ETag"]
    assert client.get(f"/api/v2/jobs/{job_id}", headers={**auth_headers, "If-None-Match": etag}).status_code == 304
    with db.transaction() as session:
        lifecycle.finish(session, claim, status=JobStatus.SUCCEEDED, result={"files": []})
    done = client.get(f"/api/v2/jobs/{job_id}", headers={**auth_headers, "If-None-Match": etag})
    assert done.status_code == 200 and done.get_json()["status"] == JobStatus.SUCCEEDED
    assert "Retry-After" not in done.headers


def test_a_deleted_accounts_token_stops_at_once(client, make_user, db):
    user, headers = make_user()
    project_id = new_project(client, headers)
    job_id = submit(client, headers, project_id).get_json()["id"]
    assert client.get(f"/api/v2/jobs/{job_id}", headers=headers).status_code == 200
    with db.transaction() as session:
        session.execute(delete(User).where(User.id == user.id))
    for path in (f"/api/v2/jobs/{job_id}", "/api/v2/auth/me", "/api/v2/projects"):
        refused = client.get(path, headers=headers)
        assert refused.status_code == 401 and refused.content_type == "application/problem+json", path


def concurrently(count: int, call) -> list:
    """`call(i)` from `count` threads released together; their results in order."""
    start, results = threading.Barrier(count), [None] * count

    def run(i: int) -> None:
        start.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


class TestQuotasUnderConcurrentSubmissions:
    @pytest.fixture
    def settings_overrides(self):
        return {"ratelimit_default": "10000 per minute", "ratelimit_generate_agentic": "10000 per minute",
                "plan_free_monthly_generations": 7, "plan_free_concurrent_jobs": 100}

    def test_the_monthly_quota_is_exact(self, app, make_user, db):
        user, headers = make_user()
        project_id = new_project(app.test_client(), headers)
        answers = concurrently(16, lambda i: app.test_client().post(
            "/api/v2/generate/agentic", json={"project_id": project_id, "spec": SMALL_SPEC}, headers=headers))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [202] * 7 + [402] * 9
        assert {a.get_json()["limit"] for a in answers if a.status_code == 402} == {"monthly_generations"}
        with db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Job).where(Job.owner_id == user.id)) == 7
            assert session.scalar(select(MonthlyUsage.generations).where(MonthlyUsage.user_id == user.id)) == 7
        usage = app.test_client().get("/api/v2/billing/usage", headers=headers).get_json()
        assert usage["generations"] == {"used": 7, "limit": 7}

    @pytest.mark.parametrize("settings_overrides", [{
        "ratelimit_default": "10000 per minute", "ratelimit_generate_agentic": "10000 per minute",
        "plan_free_monthly_generations": 1000, "plan_free_concurrent_jobs": 3}])
    def test_the_jobs_in_flight_limit_is_exact(self, app, make_user, db):
        user, headers = make_user()
        project_id = new_project(app.test_client(), headers)
        answers = concurrently(12, lambda i: app.test_client().post(
            "/api/v2/generate/agentic", json={"project_id": project_id, "spec": SMALL_SPEC}, headers=headers))
        assert sorted(a.status_code for a in answers) == [202] * 3 + [402] * 9
        assert {a.get_json()["limit"] for a in answers if a.status_code == 402} == {"concurrent_jobs"}
        with db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(Job).where(Job.owner_id == user.id)) == 3
            # A refused submission takes nothing from the month.
            assert session.scalar(select(MonthlyUsage.generations).where(MonthlyUsage.user_id == user.id)) == 3
