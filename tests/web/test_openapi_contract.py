"""The OpenAPI document as a frontend team needs it: examples that work, one Problem, limits, names."""
from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest

from shared import oauth_login
from shared import admin as admin_ops
from shared.schemas.spec import MAX_ENTITIES, MAX_FIELDS
from tests.peers.stripe_events import WEBHOOK_PATH, post_webhook
from web.api_document import OPERATION_IDS

PROBLEM_MIME = "application/problem+json"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
def settings_overrides(stripe_stub):
    stripe_stub.add_price("price_pro_monthly")
    stripe_stub.add_price("price_team_monthly")
    return {"ratelimit_enabled": False, "stripe_api_base": stripe_stub.url}


@pytest.fixture
def doc(client) -> dict[str, Any]:
    return client.get("/api/v2/openapi.json").get_json()


def operations(doc) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def validator(doc, schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    # The document's components ride along so that its #/components/... references resolve.
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]}, validate_formats=True)


def examples(doc) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every example in the document."""
    for path, method, operation in operations(doc):
        for mime, media in operation.get("requestBody", {}).get("content", {}).items():
            if "example" in media:
                yield f"{method} {path} request", media["schema"], media["example"]
        for status, response in operation["responses"].items():
            for mime, media in response.get("content", {}).items():
                if "example" in media:
                    yield f"{method} {path} {status}", media["schema"], media["example"]
    for name, response in doc["components"]["responses"].items():
        for media in response["content"].values():
            yield f"response {name}", media["schema"], media["example"]
    for name, schema in doc["components"]["schemas"].items():
        for index, example in enumerate(schema.get("examples", [])):
            yield f"schema {name}[{index}]", {"$ref": f"#/components/schemas/{name}"}, example


def test_every_request_body_and_main_response_has_an_example(doc):
    missing = [f"{method} {path}" for path, method, operation in operations(doc)
               if "requestBody" in operation and "example" not in operation["requestBody"]["content"]["application/json"]]
    assert not missing, f"request bodies without an example: {missing}"
    schemas = doc["components"]["schemas"]
    main = ["TokenResponse", "UserOut", "ProjectOut", "ProjectPage", "FileInfo", "FileOut", "FileList", "JobOut",
            "JobPage", "PlanList", "UsageOut", "Problem", "ValidationProblem"]
    assert [name for name in main if not schemas[name].get("examples")] == []


def test_every_example_is_valid_against_its_own_schema(doc):
    checked = 0
    for where, schema, example in examples(doc):
        errors = [error.message for error in validator(doc, schema).iter_errors(example)]
        assert not errors, f"{where}: {errors}"
        checked += 1
    assert checked > 30


def test_a_broken_example_would_be_caught(doc):
    # The check above can fail: the generation example without its spec's entities is invalid.
    body = next(op["requestBody"]["content"]["application/json"] for path, _, op in operations(doc)
                if path == "/api/v2/generate/fullstack")
    broken = copy.deepcopy(body["example"])
    broken["spec"]["entities"] = []
    assert not validator(doc, body["schema"]).is_valid(broken)


def test_every_request_example_is_accepted_by_the_api(client, doc, db):
    """Each example, posted as it stands with only the ids of objects it refers to filled in, gets a 2xx."""
    bodies = {(path, method): op["requestBody"]["content"]["application/json"]["example"]
              for path, method, op in operations(doc) if "requestBody" in op}
    answered: dict[tuple[str, str], int] = {}

    def send(method: str, path: str, body: Any, *, headers: dict | None = None, url: str | None = None):
        raw = json.dumps(body).encode()
        response = client.open(url or path, method=method.upper(), data=raw, headers=headers or {},
                               content_type="application/json")
        assert 200 <= response.status_code < 300, (method, path, response.status_code, response.get_json())
        answered[(path, method)] = response.status_code
        return response

    example = lambda path, method="post": copy.deepcopy(bodies[(path, method)])  # noqa: E731

    registered = send("post", "/api/v2/auth/register", example("/api/v2/auth/register")).get_json()
    logged_in = send("post", "/api/v2/auth/login", example("/api/v2/auth/login")).get_json()
    refreshed = send("post", "/api/v2/auth/refresh",
                     {**example("/api/v2/auth/refresh"), "refresh_token": registered["refresh_token"]}).get_json()
    send("post", "/api/v2/auth/logout", {**example("/api/v2/auth/logout"), "refresh_token": refreshed["refresh_token"]},
         headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    # That login is over; the other one goes on.
    auth = {"Authorization": f"Bearer {logged_in['access_token']}"}

    user_id = client.get("/api/v2/auth/me", headers=auth).get_json()["id"]
    with db.transaction() as session:
        code = oauth_login.issue_login_code(session, user_id, 60)
    send("post", "/api/v2/auth/oauth/exchange", {**example("/api/v2/auth/oauth/exchange"), "code": code})

    project = send("post", "/api/v2/projects", example("/api/v2/projects"), headers=auth).get_json()
    project_path = "/api/v2/projects/{project_id}"
    send("patch", project_path, example(project_path, "patch"), headers=auth,
         url=f"/api/v2/projects/{project['id']}")
    file_path = "/api/v2/projects/{project_id}/files/{file_path}"
    send("put", file_path, example(file_path, "put"), headers=auth,
         url=f"/api/v2/projects/{project['id']}/files/notes/ideas.md")
    for kind in ("agentic", "fullstack"):
        path = f"/api/v2/generate/{kind}"
        send("post", path, {**example(path), "project_id": project["id"]}, headers=auth)

    send("post", "/api/v2/billing/checkout", example("/api/v2/billing/checkout"), headers=auth)
    with db.transaction() as session:
        admin_ops.promote(session, registered_email(client, auth))
    send("post", "/api/v2/admin/jobs/replay", example("/api/v2/admin/jobs/replay"), headers=auth)

    response = post_webhook(client, json.dumps(example(WEBHOOK_PATH)).encode())
    assert response.status_code == 200, response.get_json()
    answered[(WEBHOOK_PATH, "post")] = 200

    assert set(answered) == set(bodies), f"request examples not tried: {set(bodies) - set(answered)}"


def registered_email(client, auth) -> str:
    return client.get("/api/v2/auth/me", headers=auth).get_json()["email"]


def test_every_error_response_refers_to_one_named_problem(doc):
    problem_refs = {"#/components/schemas/Problem", "#/components/schemas/ValidationProblem"}
    for path, method, operation in operations(doc):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert set(response) == {"$ref"}, f"{method} {path} {status} is inlined"
    for name, response in doc["components"]["responses"].items():
        assert response["content"][PROBLEM_MIME]["schema"]["$ref"] in problem_refs, name
    assert doc["components"]["responses"]["ValidationFailed"]["content"][PROBLEM_MIME]["schema"]["$ref"] \
        == "#/components/schemas/ValidationProblem"
    # No other schema repeats the problem's shape.
    text = json.dumps(doc)
    assert text.count("A URI identifying the kind of problem") == 2  # Problem and ValidationProblem
    assert "ValidationErrorModel" not in text


def test_bodies_document_400_413_and_415_and_bodiless_routes_no_422(doc):
    login = doc["paths"]["/api/v2/auth/login"]["post"]["responses"]
    assert {"400", "413", "415", "422"} <= set(login)
    me = doc["paths"]["/api/v2/auth/me"]["get"]["responses"]
    assert not {"400", "413", "415", "422"} & set(me)


def test_the_validators_limits_are_in_the_schema(doc):
    schemas = doc["components"]["schemas"]
    app = schemas["AppSpec"]["properties"]
    assert app["app_name"]["pattern"] == "^[a-z][a-z0-9_]{0,39}$"
    assert (app["entities"]["minItems"], app["entities"]["maxItems"]) == (1, MAX_ENTITIES)
    entity = schemas["EntitySpec"]["properties"]
    assert entity["name"]["pattern"] == "^[A-Z][A-Za-z0-9]{0,39}$"
    assert entity["fields"]["maxItems"] == MAX_FIELDS
    field = schemas["FieldSpec"]["properties"]
    assert field["name"]["pattern"] == "^[a-z][a-z0-9_]{0,39}$"
    assert set(field["type"]["enum"]) == {"string", "text", "integer", "float", "boolean", "date", "datetime"}
    assert schemas["ProjectCreate"]["properties"]["name"]["maxLength"] == 100
    per_page = next(p for p in doc["paths"]["/api/v2/projects"]["get"]["parameters"] if p["name"] == "per_page")
    assert per_page["schema"]["maximum"] == 100
    files = doc["paths"]["/api/v2/projects/{project_id}/files"]["get"]["parameters"]
    assert {p["name"] for p in files} >= {"page", "per_page"}


def test_schema_patterns_agree_with_the_validators(client, auth_headers):
    # A name the pattern refuses is refused by the API too, with the validator's own message.
    project = client.post("/api/v2/projects", json={"name": "p"}, headers=auth_headers).get_json()
    spec = {"app_name": "Bad-Name", "entities": [{"name": "Note", "fields": [{"name": "title", "type": "string"}]}]}
    response = client.post("/api/v2/generate/fullstack", json={"project_id": project["id"], "spec": spec},
                           headers=auth_headers)
    assert response.status_code == 422
    assert "invalid app_name 'Bad-Name'" in response.get_json()["detail"]


def test_operation_ids_are_chosen_unique_and_camel_case(doc):
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", name) for name in ids), ids
    # A new route fails here until it is given a name in web/api_document.py.
    assert sorted(ids) == sorted(OPERATION_IDS.values())
    assert doc["paths"]["/api/v2/jobs/{job_id}"]["get"]["operationId"] == "getJob"
