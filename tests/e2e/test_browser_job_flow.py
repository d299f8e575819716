"""A page in a real headless Chromium, on another origin, runs the whole job flow over CORS.

The API is served over HTTP on one loopback port, the page from another (a different
origin), and a real Celery worker runs the job. The outcome is read from the page.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import STRONG_PASSWORD, migrate
from tests.peers.browser import StaticSite
from tests.worker.conftest import celery_app, live_server, worker  # noqa: F401 - fixtures used below

PAGES = Path(__file__).parent / "pages"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> str:
    # The flow is the same on every database; SQLite alone keeps this test lean.
    url = f"sqlite:///{tmp_path_factory.mktemp('browser-db') / 'devora.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="module")
def allowed_site():
    with StaticSite(PAGES) as site:
        yield site


@pytest.fixture(scope="module")
def other_site():
    with StaticSite(PAGES) as site:
        yield site


@pytest.fixture
def settings_overrides(allowed_site):
    return {"cors_origins": allowed_site.origin, "job_poll_interval_seconds": 1}


def open_flow(page, site: StaticSite, api: str, body: dict, email: str, project: str) -> dict:
    config = {"api": api, "email": email, "password": STRONG_PASSWORD, "project": project, "body": body}
    page.goto(f"{site.origin}/job_flow.html#{quote(json.dumps(config))}")
    page.wait_for_function("document.body.dataset.done === 'true'", timeout=120_000)
    return json.loads(page.inner_text("#result"))


def test_a_page_on_an_allowed_origin_submits_and_polls_a_job_to_success(browser_page, app, live_server, worker,
                                                                        make_user, allowed_site):
    user, _ = make_user("browser@example.com")
    # The document's own example, spec and all, is what the page sends.
    body = app.api_doc["paths"]["/api/v2/generate/fullstack"]["post"]["requestBody"]["content"][
        "application/json"]["example"]
    outcome = open_flow(browser_page, allowed_site, live_server, body, user.email, "browser-shop")

    assert outcome["ok"], (outcome, browser_page.console)
    assert outcome["loginStatus"] == 200 and outcome["submitStatus"] == 202
    assert outcome["rateLimitPolicy"] == '"auth.login";q=5;w=60'
    assert re.fullmatch(r"/api/v2/projects/[0-9a-f-]{36}", outcome["projectLocation"])
    assert outcome["location"] == f"/api/v2/jobs/{outcome['job']['id']}"
    assert outcome["submitRetryAfter"] == "1"
    assert outcome["polls"] >= 1 and outcome["statuses"][-1] == "succeeded"
    assert outcome["etag"] and outcome["etag"].startswith('"')
    assert outcome["job"]["status"] == "succeeded" and outcome["job"]["files"] > 0
    assert outcome["archiveBytes"] > 0 and "attachment" in outcome["archiveName"]


def test_the_same_page_on_another_origin_is_refused_by_the_browser(browser_page, app, live_server, make_user,
                                                                   other_site):
    user, _ = make_user("refused@example.com")
    outcome = open_flow(browser_page, other_site, live_server, {}, user.email, "refused-shop")

    assert outcome == {"ok": False, "error": "TypeError: Failed to fetch", "polls": 0, "notModified": 0,
                       "statuses": []}
    assert any("blocked by CORS policy" in line for line in browser_page.console), browser_page.console
