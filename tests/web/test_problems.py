"""Every error is an RFC 9457 problem, without tracebacks."""
from __future__ import annotations

import logging

PROBLEM = "application/problem+json"


def assert_problem(response, status):
    assert response.status_code == status
    assert response.content_type == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"]
    return body


def test_unknown_route_is_a_404_problem(client):
    assert_problem(client.get("/api/v2/nothing-here"), 404)


def test_wrong_method_is_a_405_problem_with_allow(client):
    response = client.delete("/healthz")
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_malformed_json_is_a_problem(client):
    response = client.post("/api/v2/auth/login", data="{not json", content_type="application/json")
    assert_problem(response, 400)


def test_validation_problem_lists_every_failing_field(client):
    response = client.post("/api/v2/auth/register", json={"email": "bad", "password": "x", "surprise": 1})
    body = assert_problem(response, 422)
    locations = {tuple(error["loc"]) for error in body["errors"]}
    assert {("email",), ("password",), ("surprise",)} <= locations


def test_unexpected_error_is_a_500_problem_without_traceback(app, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    caplog.set_level(logging.ERROR)
    response = app.test_client().get("/boom")
    body = assert_problem(response, 500)
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert body["detail"] == "an unexpected error occurred; it has been logged"
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
