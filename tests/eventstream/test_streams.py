"""GET /api/v2/events on the real stream process, over real HTTP, with events published as workers do."""
from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest
import requests

from shared import events as ev
from shared.models.base import utcnow
from tests.events_helpers import EventStream, new_job, set_job, wait_until


def test_events_arrive_in_order_and_a_reconnect_resumes_after_last_event_id(stream, events, make_user, db):
    user, headers = make_user()
    job = new_job(db, user.id)
    with EventStream(stream.events_url, headers=headers) as first:
        assert first.ok, first.response.text
        snapshot = first.next_event()
        assert snapshot.type == "job.snapshot" and snapshot.id is None
        assert snapshot.payload["id"] == str(job) and snapshot.payload["status"] == "queued"
        set_job(db, job, status="running", attempts=1)
        published = [events.publish(user.id, job, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3}),
                     events.publish(user.id, job, ev.JOB_PROGRESS, {"percent": 20, "stage": "plan"}),
                     events.publish(user.id, job, ev.JOB_FILE, {"path": "app/models.py", "action": "generated"})]
        received = first.take(3)
        assert [e.id for e in received] == published
        assert [e.type for e in received] == ["job.started", "job.progress", "job.file"]
        assert received[2].payload == {"path": "app/models.py", "action": "generated"}
        assert first.lines[0] == "retry: 3000", "the retry hint comes first"
    later = [events.publish(user.id, job, ev.JOB_PROGRESS, {"percent": 60, "stage": "test"}),
             events.publish(user.id, job, ev.JOB_SUCCEEDED, {"files": 5})]
    with EventStream(stream.events_url, headers={**headers, "Last-Event-ID": published[-1]}) as resumed:
        assert [e.id for e in resumed.take(2)] == later
        final = events.publish(user.id, job, ev.JOB_CANCELED)
        assert resumed.next_event().id == final, "nothing repeated, no snapshot on an exact resume"
    # The query parameter serves clients that cannot set headers; the header wins over it,
    # as when EventSource reconnects to the URL it was opened with.
    with EventStream(stream.events_url, headers=headers, params={"last_event_id": later[0]}) as by_query:
        assert [e.id for e in by_query.take(2)] == [later[1], final]
    with EventStream(stream.events_url, headers={**headers, "Last-Event-ID": later[1]},
                     params={"last_event_id": published[0]}) as both:
        assert both.next_event().id == final


def test_a_resume_from_an_id_no_longer_kept_gets_snapshots_then_live_events(
        stream, events, make_user, db, settings):
    user, headers = make_user()
    long_done = new_job(db, user.id, status="succeeded", updated_at=utcnow() - timedelta(days=1))
    chatty, waiting = new_job(db, user.id, status="running"), new_job(db, user.id)
    first = events.publish(user.id, chatty, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
    # Far more than EVENTS_MAX_LENGTH: the first id is trimmed away.
    for n in range(settings.events_max_length + 250):
        events.publish(user.id, chatty, ev.JOB_PROGRESS, {"percent": n % 100, "stage": "x"})
    assert not events.is_kept(user.id, first)
    set_job(db, chatty, status="succeeded", progress_percent=100, progress_stage="succeeded")
    with EventStream(stream.events_url, headers={**headers, "Last-Event-ID": first}) as resumed:
        snapshots = resumed.take(2)
        assert [e.type for e in snapshots] == ["job.snapshot"] * 2 and {e.id for e in snapshots} == {None}
        states = {e.job_id: e.payload["status"] for e in snapshots}
        # The job that ended while the client was away is reported; one that ended long before is not.
        assert states == {str(chatty): "succeeded", str(waiting): "queued"}
        assert str(long_done) not in states
        live = events.publish(user.id, waiting, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
        event = resumed.next_event()
        assert (event.id, event.job_id) == (live, str(waiting))


@pytest.fixture
def settings_overrides():
    return {"events_max_length": 10, "events_max_streams_per_user": 2, "events_max_streams_per_process": 3,
            "events_heartbeat_seconds": 0.2}


def test_another_users_events_never_appear_whatever_the_filter(stream, events, make_user, db, stream_token):
    alice, alice_headers = make_user()
    bob, bob_headers = make_user()
    alice_job, bob_job = new_job(db, alice.id), new_job(db, bob.id)
    with EventStream(stream.events_url, headers=bob_headers) as bobs:
        assert bobs.next_event().job_id == str(bob_job)  # his own snapshot only
        events.publish(alice.id, alice_job, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
        own = events.publish(bob.id, bob_job, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
        event = bobs.next_event()
        assert (event.id, event.job_id) == (own, str(bob_job))
    for credential in ({"headers": bob_headers}, {"token": stream_token(bob.id)}):
        refused = EventStream(stream.events_url, params={"job_id": str(alice_job)}, **credential)
        assert refused.response.status_code == 404
        assert refused.response.headers["Content-Type"] == "application/problem+json"
        assert refused.response.json()["title"] == "Not found"
    # Bob's stream token read with Alice's job id in the Last-Event-ID still reads Bob's stream.
    alice_id = events.publish(alice.id, alice_job, ev.JOB_PROGRESS, {"percent": 5, "stage": "x"})
    with EventStream(stream.events_url, token=stream_token(bob.id), headers={"Last-Event-ID": alice_id}) as again:
        assert [e.job_id for e in [again.next_event()]] == [str(bob_job)]


def test_a_job_filter_shows_that_job_alone(stream, events, make_user, db):
    user, headers = make_user()
    watched, other = new_job(db, user.id), new_job(db, user.id)
    with EventStream(stream.events_url, headers=headers, params={"job_id": str(watched)}) as filtered:
        snapshot = filtered.next_event()
        assert (snapshot.type, snapshot.job_id) == ("job.snapshot", str(watched))
        events.publish(user.id, other, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
        mine = events.publish(user.id, watched, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
        assert filtered.next_event().id == mine


def test_stream_tokens_come_from_the_api_work_only_on_the_stream_and_only_for_their_user(
        stream, events, make_user, db, client):
    user, headers = make_user()
    job = new_job(db, user.id)
    issued = client.post("/api/v2/events/token", headers=headers)
    assert issued.status_code == 201 and issued.headers["Cache-Control"] == "no-store"
    body = issued.get_json()
    token = body["token"]
    assert body["token_type"] == "stream" and body["expires_in"] == 300 and body["stream_url"] == "/api/v2/events"
    with EventStream(stream.events_url, token=token) as by_token:
        assert by_token.next_event().job_id == str(job)
        published = events.publish(user.id, job, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
        assert by_token.next_event().id == published
    # Not an access token: the REST API refuses it.
    for path in ("/api/v2/auth/me", "/api/v2/jobs", f"/api/v2/jobs/{job}"):
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.post("/api/v2/events/token", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # Each credential in its own place: no access token in the URL, no stream token in the header.
    access_token = headers["Authorization"].removeprefix("Bearer ")
    for misplaced in ({"token": access_token}, {"headers": {"Authorization": f"Bearer {token}"}}):
        refused = EventStream(stream.events_url, **misplaced)
        assert refused.response.status_code == 401
        assert refused.response.headers["Content-Type"] == "application/problem+json"
        assert refused.response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/api/v2/events/token").status_code == 401


def test_the_per_user_stream_limit_answers_429_and_frees_a_slot_on_hangup(stream, make_user):
    alice, alice_headers = make_user()
    _bob, bob_headers = make_user()
    first, second = EventStream(stream.events_url, headers=alice_headers), EventStream(stream.events_url,
                                                                                       headers=alice_headers)
    assert first.ok and second.ok
    third = EventStream(stream.events_url, headers=alice_headers)
    assert third.response.status_code == 429
    assert third.response.headers["Content-Type"] == "application/problem+json"
    assert int(third.response.headers["Retry-After"]) >= 1
    assert third.response.json()["type"].endswith("/too-many-streams")
    with EventStream(stream.events_url, headers=bob_headers) as bobs:
        assert bobs.ok, "the limit is per user"
        # The process holds its limit of three now.
        refused = EventStream(stream.events_url, headers=make_user()[1])
        assert refused.response.status_code == 429 and "this server" in refused.response.json()["detail"]
    first.close()

    def reopened():
        attempt = EventStream(stream.events_url, headers=alice_headers)
        if attempt.ok:
            return attempt
        assert attempt.response.status_code == 429
        return None

    wait_until(reopened, "the closed stream's slot to be freed").close()
    second.close()


def test_idle_streams_get_heartbeat_comments_and_unbuffered_headers(stream, make_user):
    _user, headers = make_user()
    with EventStream(stream.events_url, headers={**headers, "Accept-Encoding": "gzip, br"}, read_timeout=5) as idle:
        response = idle.response
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert "no-cache" in response.headers["Cache-Control"]
        assert response.headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in response.headers
        while idle.parser.comments < 3:
            assert idle.next_line() is not None, f"the stream ended: {idle.lines}"
        assert [line for line in idle.lines if line.startswith(":")] == [": ping"] * 3
        assert not [line for line in idle.lines if line.startswith("data:")], "a user without jobs gets no events"



def test_open_streams_are_counted_in_the_metrics(stream, make_user):
    _user, headers = make_user()
    assert stream.metric("devora_event_streams_open") == 0
    with EventStream(stream.events_url, headers=headers), EventStream(stream.events_url, headers=headers):
        assert stream.metric("devora_event_streams_open") == 2
    wait_until(lambda: stream.metric("devora_event_streams_open") == 0, "the gauge to fall back to 0")


def test_shutdown_ends_every_stream_cleanly(stream, make_user):
    _user, headers = make_user()
    streams = [EventStream(stream.events_url, headers=headers) for _ in range(2)]
    assert all(s.ok for s in streams)
    wait_until(lambda: stream.metric("devora_event_streams_open") == 2, "both streams to be open")
    os.kill(stream.process.pid, signal.SIGTERM)
    for open_stream in streams:
        # A clean end: the chunked body is terminated (a cut connection would raise here).
        assert open_stream.read_to_end() == []
    assert stream.process.wait(timeout=30) == 0
    assert "Traceback" not in stream.log()


def test_bad_requests_get_problems(stream, make_user):
    _user, headers = make_user()
    cases = [
        (stream.events_url, {"params": {"job_id": "not-a-uuid"}}, 422, ["query", "job_id"]),
        (stream.events_url, {"headers": {"Last-Event-ID": "yesterday"}}, 422, ["header", "Last-Event-ID"]),
        (stream.events_url, {"params": {"last_event_id": "1-2-3"}}, 422, ["query", "last_event_id"]),
    ]
    for url, extra, status, loc in cases:
        response = requests.get(url, headers={**headers, **extra.get("headers", {})}, params=extra.get("params"),
                                timeout=5)
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["errors"][0]["loc"] == loc
    posted = requests.post(stream.events_url, headers=headers, timeout=5)
    assert posted.status_code == 405 and posted.headers["Content-Type"] == "application/problem+json"
    assert "GET" in posted.headers["Allow"]
    missing = requests.get(f"{stream.url}/api/v2/nothing", timeout=5)
    assert missing.status_code == 404 and missing.json()["status"] == 404


def test_browsers_on_an_allowed_origin_may_read_the_stream(stream, make_user, settings):
    _user, headers = make_user()
    allowed = settings.allowed_origins[0]
    preflight = requests.options(stream.events_url, timeout=5, headers={
        "Origin": allowed, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, last-event-id"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == allowed
    assert {"AUTHORIZATION", "LAST-EVENT-ID"} <= {
        h.strip().upper() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    with EventStream(stream.events_url, headers={**headers, "Origin": allowed}) as from_browser:
        assert from_browser.response.headers["Access-Control-Allow-Origin"] == allowed
    with EventStream(stream.events_url, headers={**headers, "Origin": "https://evil.example"}) as foreign:
        assert "Access-Control-Allow-Origin" not in foreign.response.headers
    refused = requests.get(stream.events_url, headers={"Origin": allowed}, timeout=5)
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == allowed, \
        "the browser can read why it was refused"


def test_the_stream_token_never_reaches_the_log(stream, make_user, stream_token, events, db):
    user, _headers = make_user()
    job = new_job(db, user.id)
    token = stream_token(user.id)
    with EventStream(stream.events_url, token=token, params={"job_id": str(job)}) as streamed:
        streamed.next_event()
    requests.get(stream.events_url, params={"token": token + "x"}, timeout=5)
    wait_until(lambda: stream.log().count("GET /api/v2/events") >= 2, lambda: f"both access log lines in {stream.log()}")
    log = stream.log()
    assert token not in log and token.split(".")[1] not in log
    assert '"GET /api/v2/events 401' in log or "GET /api/v2/events 401" in log
