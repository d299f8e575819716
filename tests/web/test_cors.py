"""CORS: preflights for allowed and other origins, answered before authentication and rate limits."""
from __future__ import annotations

import pytest

from shared.settings import Settings

FRONTEND = "https://app.devora.example"
OTHER = "https://evil.example"


@pytest.fixture
def settings_overrides():
    return {"cors_origins": f"{FRONTEND}, http://localhost:5173", "cors_max_age_seconds": 900,
            "ratelimit_default": "3 per minute"}


def preflight(client, origin, method="POST", path="/api/v2/generate/fullstack",
              headers="authorization, content-type, idempotency-key"):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


def test_preflight_from_an_allowed_origin_lists_methods_headers_and_max_age(client):
    response = preflight(client, FRONTEND)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "idempotency-key"}
    assert response.headers["Access-Control-Max-Age"] == "900"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers["Vary"]


def test_preflight_allows_the_polling_and_event_stream_headers(client):
    response = preflight(client, FRONTEND, method="GET", path="/api/v2/jobs/3f2b8c1e-6d4a-4f0e-9b7a-2c5d8e1f0a9b",
                         headers="authorization, if-none-match, last-event-id")
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "if-none-match", "last-event-id"}


def test_preflight_from_another_origin_gets_no_cors_headers(client):
    response = preflight(client, OTHER)
    assert response.status_code == 200
    assert not [name for name in response.headers.keys() if name.lower().startswith("access-control-")]


def test_a_header_the_api_does_not_take_is_not_allowed(client):
    response = preflight(client, FRONTEND, headers="authorization, x-secret-debug")
    assert response.headers["Access-Control-Allow-Headers"].lower() == "authorization"


def test_preflights_need_no_token_and_cost_no_rate_limit(client, auth_headers):
    # The default limit is 3 a minute: ten preflights to authenticated routes would use it up.
    for _ in range(10):
        response = preflight(client, FRONTEND, method="GET", path="/api/v2/projects")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "X-RateLimit-Remaining" not in response.headers
    listed = client.get("/api/v2/projects", headers={**auth_headers, "Origin": FRONTEND})
    assert listed.status_code == 200
    assert listed.headers["X-RateLimit-Remaining"] == "2"


def test_actual_responses_expose_what_a_frontend_reads(client, auth_headers):
    created = client.post("/api/v2/projects", json={"name": "shop"}, headers={**auth_headers, "Origin": FRONTEND})
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == FRONTEND
    exposed = {h.strip() for h in created.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Location", "ETag", "Retry-After", "RateLimit", "RateLimit-Policy", "X-RateLimit-Remaining",
            "X-Request-ID", "Idempotent-Replayed"} <= exposed
    assert "Origin" in created.headers["Vary"]


def test_error_responses_carry_cors_headers_so_the_page_can_read_the_problem(client):
    response = client.get("/api/v2/projects", headers={"Origin": FRONTEND})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND


def test_another_origin_and_a_request_without_origin_get_no_cors_headers(client, auth_headers):
    for headers in ({**auth_headers, "Origin": OTHER}, auth_headers):
        response = client.get("/api/v2/auth/me", headers=headers)
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers


def test_allowed_origins_default_to_the_frontend_url_origin():
    settings = Settings(_env_file=None, frontend_url="https://app.devora.example/dashboard/")
    assert settings.allowed_origins == ["https://app.devora.example"]
    assert Settings(_env_file=None, cors_origins="").allowed_origins == []


def test_an_entry_that_is_not_an_origin_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="CORS_ORIGINS"):
        Settings(_env_file=None, cors_origins="https://app.devora.example/app")
    with pytest.raises(ValueError, match="CORS_ORIGINS"):
        Settings(_env_file=None, cors_origins="localhost:3000")
