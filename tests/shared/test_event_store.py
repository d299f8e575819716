"""The event store on a real Redis: publishing, resuming after an id, trimming, expiry, outages; stream tokens."""
from __future__ import annotations

import time
import uuid

import pytest

from shared import events
from shared.events import EventStore, JobEvent, stream_key
from shared.security import TokenService
from shared.stream_tokens import StreamTokens
from tests.conftest import make_settings


@pytest.fixture
def store(redis_url) -> EventStore:
    settings = make_settings("sqlite://", redis_url, events_max_length=10, events_retention_seconds=120)
    store = EventStore.from_settings(settings)
    yield store
    store.redis.close()


def test_events_come_back_in_order_after_an_id_without_duplicates(store):
    owner, job = uuid.uuid4(), uuid.uuid4()
    ids = [store.publish(owner, job, events.JOB_PROGRESS, {"percent": p, "stage": f"step {p}"})
           for p in (10, 20, 30, 40)]
    assert all(ids) and len(set(ids)) == 4
    everything = store.read_after(owner)
    assert [e.id for e in everything] == ids
    assert [e.payload["percent"] for e in everything] == [10, 20, 30, 40]
    assert {e.type for e in everything} == {"job.progress"} and {e.job_id for e in everything} == {str(job)}
    resumed = store.read_after(owner, ids[1])
    assert [e.id for e in resumed] == ids[2:]
    assert store.read_after(owner, ids[-1]) == []


def test_each_user_has_a_stream_of_their_own(store):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    store.publish(alice, uuid.uuid4(), events.JOB_QUEUED, {"kind": "fullstack"})
    assert store.read_after(bob) == []
    assert [e.type for e in store.read_after(alice)] == ["job.queued"]


def test_a_stream_keeps_about_max_length_events_and_says_when_an_id_is_gone(store):
    owner, job = uuid.uuid4(), uuid.uuid4()
    first = store.publish(owner, job, events.JOB_STARTED, {"attempt": 1, "max_attempts": 3})
    assert store.is_kept(owner, first)
    # Trimming is approximate (whole nodes of 100 entries), so publish well past the limit.
    for n in range(300):
        store.publish(owner, job, events.JOB_PROGRESS, {"percent": n % 100, "stage": "x"})
    assert store.redis.xlen(stream_key(owner)) < 300
    assert not store.is_kept(owner, first)
    newest = store.read_after(owner, "0-0", count=1000)[-1]
    assert store.is_kept(owner, newest.id)


def test_a_stream_expires_after_its_retention_since_the_last_event(store):
    owner = uuid.uuid4()
    store.publish(owner, uuid.uuid4(), events.JOB_CANCELED)
    ttl = store.redis.ttl(stream_key(owner))
    assert 0 < ttl <= 120


@pytest.mark.parametrize(("event_type", "payload", "message"), [
    ("job.exploded", {}, "unknown job event type"),
    ("job.snapshot", {}, "unknown job event type"),
    (events.JOB_PROGRESS, {"stage": "x" * 5000}, "at most 4096"),
])
def test_publish_refuses_unknown_types_and_big_payloads(store, event_type, payload, message):
    with pytest.raises(ValueError, match=message):
        store.publish(uuid.uuid4(), uuid.uuid4(), event_type, payload)


def test_publishing_while_redis_is_down_returns_none_and_raises_nothing(doomed_redis, caplog):
    settings = make_settings("sqlite://", doomed_redis.connection_url + "/0")
    store = EventStore.from_settings(settings)
    doomed_redis.stop()
    job = uuid.uuid4()
    assert store.publish(uuid.uuid4(), job, events.JOB_SUCCEEDED, {"files": 3}) is None
    assert f"job {job}: job.succeeded not published" in caplog.text


def test_event_json_round_trips():
    event = JobEvent(type="job.file", job_id="j", at="2026-01-01T00:00:00.000Z",
                     payload={"path": "app/ä.py", "action": "generated"}, id="1-0")
    assert JobEvent.from_json(event.to_json(), "1-0") == event


@pytest.mark.parametrize("text", ["", "12", "a-1", "1-b", "1-2-3", "-1", "1-"])
def test_malformed_event_ids_are_refused(text):
    with pytest.raises(ValueError):
        events.parse_event_id(text)


def test_stream_tokens_are_for_streams_only_and_expire():
    settings = make_settings("sqlite://", "redis://127.0.0.1:1/0", events_token_ttl_seconds=1)
    streams, access = StreamTokens(settings), TokenService(settings)
    user = uuid.uuid4()
    token, expires = streams.issue(user)
    assert streams.verify(token) == user and expires - time.time() <= 1
    assert access.verify(token) is None, "a stream token is not an access token"
    assert streams.verify(access.issue(user, "user", uuid.uuid4())) is None, "an access token is not a stream token"
    other_secret = make_settings("sqlite://", "redis://127.0.0.1:1/0", secret_key="another-secret-" + "y" * 32)
    assert StreamTokens(other_secret).verify(token) is None
    time.sleep(2.1)
    assert streams.verify(token) is None


def test_a_stream_token_names_the_login_it_was_issued_to():
    streams = StreamTokens(make_settings("sqlite://", "redis://127.0.0.1:1/0"))
    user, login = uuid.uuid4(), uuid.uuid4()
    bound = streams.claims(streams.issue(user, login)[0])
    assert (bound.user_id, bound.session_id) == (user, login)
    unbound = streams.claims(streams.issue(user)[0])
    assert (unbound.user_id, unbound.session_id) == (user, None), "an operator tool's token names no login"
    assert streams.claims("not.a.token") is None
