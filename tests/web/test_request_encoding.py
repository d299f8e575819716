"""Parser limits and text encodings of requests: a 400 problem, never a 500 and never a silent replacement."""
from __future__ import annotations

import uuid

import pytest
from flask import url_for

from shared import admin as admin_ops
from web.json_bodies import json_body_endpoints

NESTED = 5000


@pytest.mark.parametrize("path", ["/api/v2/auth/login", "/api/v2/auth/register", "/api/v2/projects",
                                  "/api/v2/generate/agentic", "/api/v2/billing/checkout"])
def test_json_nested_too_deep_is_a_400_on_every_json_endpoint(client, auth_headers, path):
    for depth in (40, NESTED):
        body = b'{"name": ' + b"[" * depth + b"]" * depth + b"}"
        response = client.post(path, data=body, headers={**auth_headers, "Content-Type": "application/json"})
        assert response.status_code == 400, (depth, response.get_json())
        problem = response.get_json()
        assert "levels deep" in problem["detail"] and problem["max_depth"] == 32


def json_body_routes(app) -> list[tuple[str, str]]:
    """(method, URL) of every route that reads a JSON body, its path parameters filled in."""
    endpoints = json_body_endpoints(app)
    values = {"project_id": uuid.uuid4(), "file_path": "notes.txt"}
    with app.test_request_context():
        return [(method, url_for(rule.endpoint, **{name: values[name] for name in rule.arguments}))
                for rule in app.url_map.iter_rules() if rule.endpoint in endpoints
                for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]


def test_an_integer_too_long_to_read_is_a_400_on_every_json_endpoint(app, client, make_user, db):
    user, headers = make_user()
    with db.transaction() as session:
        admin_ops.promote(session, user.email)  # so the admin route reaches its body too
    routes = json_body_routes(app)
    assert len(routes) >= 10 and ("POST", "/api/v2/auth/login") in routes
    body = b'{"name": ' + b"7" * 5000 + b"}"
    for method, url in routes:
        response = client.open(url, method=method, data=body,
                               headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == 400 and response.mimetype == "application/problem+json", (url, response.status_code)
        problem = response.get_json()
        assert problem["type"].endswith("/invalid-json"), (url, problem)
        assert "not acceptable JSON" in problem["detail"] and "digits" in problem["detail"], (url, problem)
    # Up to the limit a number is only a value, of the wrong type here.
    within = client.post("/api/v2/projects", data=b'{"name": ' + b"7" * 4300 + b"}", headers={
        **headers, "Content-Type": "application/json"})
    assert within.status_code == 422


def test_json_within_the_depth_limit_is_validated_as_usual(client, auth_headers):
    body = b'{"name": "ok", "description": ' + b"[" * 10 + b"]" * 10 + b"}"
    response = client.post("/api/v2/projects", data=body, headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == 422, "a list is no description: validation speaks, not the parser"


@pytest.mark.parametrize("escape", ["%c0%af", "%ff%fe", "%e2%82"])
def test_invalid_utf8_in_a_file_path_is_refused_not_replaced(client, auth_headers, escape):
    project = client.post("/api/v2/projects", json={"name": "enc"}, headers=auth_headers).get_json()["id"]
    response = client.get(f"/api/v2/projects/{project}/files/{escape}", headers=auth_headers)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert "not valid UTF-8" in response.get_json()["detail"] and response.get_json()["part"] == "path"


def test_invalid_utf8_in_a_query_string_is_refused(client, auth_headers):
    response = client.get("/api/v2/jobs?status=%ff", headers=auth_headers)
    assert response.status_code == 400 and response.get_json()["part"] == "query string"
    assert client.get("/api/v2/jobs?status=queued", headers=auth_headers).status_code == 200


def test_valid_utf8_in_a_file_path_is_a_name_like_any_other(client, auth_headers):
    project = client.post("/api/v2/projects", json={"name": "utf8"}, headers=auth_headers).get_json()["id"]
    put = client.put(f"/api/v2/projects/{project}/files/caf%C3%A9.txt", json={"content": "x"}, headers=auth_headers)
    assert put.status_code == 201, put.get_json()
    assert client.get(f"/api/v2/projects/{project}/files/caf%C3%A9.txt", headers=auth_headers).status_code == 200


def test_raw_non_ascii_bytes_in_a_query_string_are_checked_like_escaped_ones(client, auth_headers):
    # A WSGI server passes the raw bytes as Latin-1 text (PEP 3333): b"\xff" arrives as "\xff".
    response = client.get("/api/v2/jobs", headers=auth_headers, environ_overrides={"QUERY_STRING": "status=\xff"})
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert "not valid UTF-8" in response.get_json()["detail"] and response.get_json()["part"] == "query string"
    # Raw UTF-8 ("é" as its two bytes) is a character like any other.
    valid = client.get("/api/v2/jobs", headers=auth_headers,
                       environ_overrides={"QUERY_STRING": "status=" + "é".encode().decode("latin-1")})
    assert valid.status_code == 422, "not a status: validation speaks, not the URL check"


@pytest.mark.parametrize("raw_uri", [True, False], ids=["server keeps the raw URI", "PATH_INFO only"])
def test_raw_non_ascii_bytes_in_a_path_are_checked_like_escaped_ones(client, auth_headers, raw_uri):
    project = client.post("/api/v2/projects", json={"name": "raw"}, headers=auth_headers).get_json()["id"]
    path = f"/api/v2/projects/{project}/files/caf\xe9.txt"  # b"caf\xe9.txt": Latin-1, not UTF-8
    overrides = {"PATH_INFO": path, "RAW_URI": path if raw_uri else None, "REQUEST_URI": path if raw_uri else None}
    response = client.get(path, headers=auth_headers, environ_overrides=overrides)
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert "not valid UTF-8" in response.get_json()["detail"] and response.get_json()["part"] == "path"
