"""Parser limits and text encodings of requests: a 400 problem, never a 500 and never a silent replacement."""
from __future__ import annotations

import pytest

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
