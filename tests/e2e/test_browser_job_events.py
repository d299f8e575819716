"""A page in a real headless Chromium follows its job live over one EventSource, across a dropped stream.

The API and the stream process are served on loopback ports, the page from another origin; a
real Celery worker runs the job and publishes its events. The outcome is read from the page.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from shared.events import EventStore
from tests.conftest import STRONG_PASSWORD, migrate
from tests.events_helpers import StreamProcess
from tests.jobs_helpers import SMALL_SPEC, big_spec
from tests.peers.browser import StaticSite
from tests.worker.conftest import celery_app, live_server, worker  # noqa: F401 - fixtures used below

PAGES = Path(__file__).parent / "pages"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> str:
    # The flow is the same on every database; SQLite alone keeps this test lean.
    url = f"sqlite:///{tmp_path_factory.mktemp('events-db') / 'devora.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="module")
def site():
    with StaticSite(PAGES) as served:
        yield served


@pytest.fixture
def settings_overrides(site):
    return {"cors_origins": site.origin}


@pytest.fixture
def stream(app, settings, tmp_path):
    server = StreamProcess(settings, tmp_path).start()
    yield server
    server.stop()


def open_page(page, site, api: str, stream: StreamProcess, email: str, spec: dict) -> None:
    config = {"api": api, "stream": stream.events_url, "email": email, "password": STRONG_PASSWORD,
              "project": f"live-{email.split('@')[0]}", "body": {"spec": spec}}
    page.goto(f"{site.origin}/job_events.html#{quote(json.dumps(config))}")


def outcome(page) -> dict:
    page.wait_for_function("document.body.dataset.done === 'true'", timeout=120_000)
    return json.loads(page.inner_text("#result"))


def job_events(received: list[dict], job_id: str) -> list[dict]:
    return [event for event in received if event["job"] == job_id and event["id"]]


def in_stream_order(ids: list[str]) -> bool:
    keys = [tuple(int(part) for part in event_id.split("-")) for event_id in ids]
    return keys == sorted(keys) and len(set(keys)) == len(keys)


def test_a_page_follows_its_job_to_the_end_over_one_event_source(browser_page, app, live_server, worker, stream,
                                                                make_user, site):
    user, _ = make_user("live@example.com")
    open_page(browser_page, site, live_server, stream, user.email, SMALL_SPEC)
    result = outcome(browser_page)

    assert result["ok"] and result["final"] == "job.succeeded", (result, browser_page.console)
    mine = job_events(result["received"], result["jobId"])
    types = [event["type"] for event in mine]
    assert types[0] == "job.queued" and types[-1] == "job.succeeded"
    assert {"job.started", "job.progress"} <= set(types)
    assert in_stream_order([event["id"] for event in mine]), "in order, without duplicates"
    assert browser_page.locator("#events li").count() == len(result["received"]), "the page shows every event"


def test_the_browser_reconnects_by_itself_and_misses_nothing_when_the_stream_drops(
        browser_page, app, live_server, worker, stream, settings, make_user, site):
    user, _ = make_user("dropped@example.com")
    # A job long enough to drop the stream in the middle of it.
    open_page(browser_page, site, live_server, stream, user.email, big_spec(entities=6, fields=20))
    browser_page.wait_for_function("document.body.dataset.job && Number(document.body.dataset.count) >= 2",
                                   timeout=60_000)
    stream.stop()
    time.sleep(1.0)
    stream.start()
    result = outcome(browser_page)

    assert result["ok"] and result["final"] == "job.succeeded", (result, browser_page.console)
    assert result["opened"] >= 2 and result["errors"] >= 1, "the connection dropped and came back"
    mine = job_events(result["received"], result["jobId"])
    assert in_stream_order([event["id"] for event in mine]), "resumed after the last id: no repeats"
    store = EventStore.from_settings(settings)
    published = [event.id for event in store.read_after(user.id) if event.job_id == result["jobId"]]
    assert [event["id"] for event in mine] == published, "every event published for the job arrived"
