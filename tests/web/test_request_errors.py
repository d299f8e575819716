"""Request errors a person can act on: bad JSON, the wrong Content-Type, malformed ids."""
from __future__ import annotations

import re

import pytest

from tests.web.test_problems import assert_problem

# Pydantic's default wording names model classes ("... instance of ProjectCreate").
INTERNAL_NAME = re.compile(r"instance of|ProjectCreate|LoginBody|GenerateBody|AppSpec|EntitySpec|dictionary")


def test_malformed_json_is_a_400_problem_with_the_position(client, auth_headers):
    response = client.post("/api/v2/projects", data='{"name": "shop" "x": 1}', content_type="application/json",
                           headers=auth_headers)
    body = assert_problem(response, 400)
    assert body["type"].endswith("/invalid-json")
    assert body["detail"] == ("the request body is not valid JSON: Expecting ',' delimiter at line 1, column 17 "
                              "(character 16)")
    assert (body["line"], body["column"], body["position"]) == (1, 17, 16)


def test_an_empty_json_body_is_a_400_saying_so(client, auth_headers):
    body = assert_problem(client.post("/api/v2/projects", data="", content_type="application/json",
                                      headers=auth_headers), 400)
    assert body["detail"] == "the request body is empty; send a JSON object"


def test_a_body_that_is_not_utf8_is_a_400(client, auth_headers):
    body = assert_problem(client.post("/api/v2/projects", data=b'{"name": "\xff"}', content_type="application/json",
                                      headers=auth_headers), 400)
    assert "UTF-8" in body["detail"]


@pytest.mark.parametrize("content_type, named", [(None, "no Content-Type"), ("text/plain", "text/plain"),
                                                 ("application/x-www-form-urlencoded",
                                                  "application/x-www-form-urlencoded")])
def test_a_body_without_the_json_content_type_is_a_415_naming_it(client, auth_headers, content_type, named):
    headers = dict(auth_headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/api/v2/projects", data='{"name": "shop"}', headers=headers)
    body = assert_problem(response, 415)
    assert body["detail"] == f"send the request body as JSON with Content-Type: application/json (got {named})"
    assert response.headers["Accept"] == "application/json"


def test_json_with_a_charset_is_accepted(client, auth_headers):
    response = client.post("/api/v2/projects", data='{"name": "shop"}',
                           headers={**auth_headers, "Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201


@pytest.mark.parametrize("raw, kind", [("[1, 2]", "an array"), ('"{\\"name\\": \\"shop\\"}"', "a string"),
                                       ("42", "a number"), ("null", "null")])
def test_json_that_is_not_an_object_is_a_422_without_internal_names(client, auth_headers, raw, kind):
    response = client.post("/api/v2/projects", data=raw, content_type="application/json", headers=auth_headers)
    body = assert_problem(response, 422)
    assert body["detail"] == f"the request body must be a JSON object, not {kind}"
    assert body["errors"] == [{"loc": [], "msg": "Input should be a JSON object", "type": "model_type"}]


def test_a_nested_value_of_the_wrong_shape_names_no_class(client, auth_headers):
    project = client.post("/api/v2/projects", json={"name": "shop"}, headers=auth_headers).get_json()
    response = client.post("/api/v2/generate/fullstack", json={"project_id": project["id"], "spec": [1]},
                           headers=auth_headers)
    body = assert_problem(response, 422)
    assert not INTERNAL_NAME.search(response.get_data(as_text=True)), body
    assert {"loc": ["spec"], "msg": "Input should be a JSON object", "type": "model_type"} in body["errors"]


def test_authentication_is_still_checked_before_the_body(client):
    response = client.post("/api/v2/projects", data="{not json", content_type="application/json")
    assert_problem(response, 401)


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v2/projects/not-a-uuid"),
    ("get", "/api/v2/projects/123/files"),
    ("put", "/api/v2/projects/abc/files/notes.md"),
    ("get", "/api/v2/jobs/42"),
    ("post", "/api/v2/jobs/xyz/cancel"),
])
def test_a_malformed_id_in_a_path_is_the_usual_404_problem(client, auth_headers, method, path):
    response = getattr(client, method)(path, headers=auth_headers, json={"content": "x"} if method == "put" else None)
    body = assert_problem(response, 404)
    assert body["type"].endswith("/not-found") and body["title"] == "Not found"
    assert "ids are UUIDs" in body["detail"]
    missing = assert_problem(client.get("/api/v2/projects/3f2b8c1e-6d4a-4f0e-9b7a-2c5d8e1f0a9b",
                                        headers=auth_headers), 404)
    assert (missing["type"], missing["title"]) == (body["type"], body["title"])


def test_an_unknown_url_is_a_404_problem_that_names_it(client):
    body = assert_problem(client.get("/api/v2/nothing-here"), 404)
    assert body["title"] == "Not found"
    assert body["detail"] == "nothing is served at /api/v2/nothing-here"
