"""The document states what the server does: its statuses, its headers, its body types, its limits."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared import admin as admin_ops
from shared.models import WebhookEvent
from tests.conftest import make_settings
from tests.jobs_helpers import SMALL_SPEC
from tests.peers.stripe_events import WEBHOOK_PATH, event, invoice, post_webhook

METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM = "application/problem+json"


@pytest.fixture
def doc(client):
    return client.get("/api/v2/openapi.json").get_json()


def operations(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_only_statuses_the_server_gives_are_documented(doc):
    for path, method, operation in operations(doc):
        assert "500" not in operation["responses"], f"{method} {path}"
    # Probes and Stripe's deliveries are never rate limited.
    for path, method in (("/healthz", "get"), ("/readyz", "get"), (WEBHOOK_PATH, "post")):
        assert "429" not in doc["paths"][path][method]["responses"], path
    assert "429" in doc["paths"]["/api/v2/projects"]["get"]["responses"]
    # The webhook answers a request it cannot read with its own 400.
    assert "422" not in doc["paths"][WEBHOOK_PATH]["post"]["responses"]
    assert "InternalError" not in doc["components"]["responses"]


def test_the_webhook_documents_its_signature_header(doc):
    parameters = doc["paths"][WEBHOOK_PATH]["post"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in parameters] == [("Stripe-Signature", "header", True)]


@pytest.mark.parametrize("signature", [None, ""])
def test_a_webhook_without_a_signature_is_the_webhooks_400_not_a_422(client, db, signature):
    response = post_webhook(client, event("invoice.paid", invoice("in_1", "cus_x")), secret=None,
                            signature=signature)
    assert response.status_code == 400 and response.content_type == PROBLEM
    problem = response.get_json()
    assert problem["type"].endswith("/webhook-rejected") and problem["detail"].startswith("Webhook signature rejected")
    assert problem["errors"][0]["loc"] == ["Stripe-Signature"]
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 0


def test_the_spec_is_required_where_the_generator_needs_one(doc):
    generate = doc["components"]["schemas"]["GenerateBody"]
    assert generate["required"] == ["project_id", "spec"]
    assert generate["properties"]["spec"] == {"$ref": "#/components/schemas/AppSpec",
                                              "description": generate["properties"]["spec"]["description"]}


def test_with_a_language_model_a_prompt_alone_is_documented_as_enough(settings):
    from web import create_app

    llm = make_settings(settings.database_url, settings.redis_url, generation_provider="llm",
                        llm_base_url="http://127.0.0.1:9/v1", llm_model="m", llm_api_key="k")
    generate = create_app(llm).api_doc["components"]["schemas"]["GenerateBody"]
    assert generate["required"] == ["project_id"]
    assert [branch["required"] for branch in generate["anyOf"]] == [["spec"], ["prompt"]]


def new_project(client, headers) -> str:
    created = client.post("/api/v2/projects", json={"name": "limits"}, headers=headers)
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


@pytest.mark.parametrize(("change", "accepted"), [
    ({"max_length": 40}, True),
    ({"max_length": 40.0}, True),  # an integer, to JSON Schema
    ({"max_length": "40"}, False),
    ({"max_length": True}, False),
    ({"required": 1}, False),
    ({"required": "true"}, False),
])
def test_body_values_are_read_as_the_json_types_the_document_gives(client, auth_headers, change, accepted):
    field = {"name": "title", "type": "string", **change}
    spec = {**SMALL_SPEC, "entities": [{"name": "Note", "fields": [field]}]}
    response = client.post("/api/v2/generate/fullstack", json={"project_id": new_project(client, auth_headers),
                                                               "spec": spec}, headers=auth_headers)
    assert response.status_code == (202 if accepted else 422), response.get_json()


@pytest.mark.parametrize("created_before", ["0.5", "1700000000", "2026-12-01", "2026-12-01 09:30:00Z"])
def test_a_date_time_in_the_query_is_rfc_3339(client, make_user, db, created_before):
    user, headers = make_user()
    with db.transaction() as session:
        admin_ops.promote(session, user.email)
    response = client.get("/api/v2/admin/jobs", query_string={"created_before": created_before}, headers=headers)
    assert response.status_code == 422, response.get_json()
    replay = client.post("/api/v2/admin/jobs/replay", headers=headers,
                         json={"status": "failed", "dry_run": 0, "created_before": created_before})
    assert replay.status_code == 422
    assert {tuple(e["loc"]) for e in replay.get_json()["errors"]} == {("dry_run",), ("created_before",)}
    fine = client.get("/api/v2/admin/jobs", query_string={"created_before": "2026-12-01T09:30:00+01:00"},
                      headers=headers)
    assert fine.status_code == 200
