"""Submitting generation jobs and polling them over HTTP (no worker consumes them here)."""
from __future__ import annotations

import uuid

import pytest

from shared.models import Job
from tests.jobs_helpers import SMALL_SPEC, THREE_ENTITY_SPEC, new_project, submit

PROBLEM = "application/problem+json"


def test_submission_is_202_with_location_and_retry_after(client, auth_headers):
    project_id = new_project(client, auth_headers)
    response = submit(client, auth_headers, project_id, THREE_ENTITY_SPEC)
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/api/v2/jobs/{job['id']}"
    assert int(response.headers["Retry-After"]) >= 1
    assert job["status"] == "queued" and job["kind"] == "fullstack" and job["project_id"] == project_id
    assert job["progress"] == {"percent": 0, "stage": "queued", "detail": None, "tokens": 0}
    assert job["attempts"] == 0 and job["error"] is None and job["result"] is None and job["usage"] is None
    polled = client.get(response.headers["Location"], headers=auth_headers)
    assert polled.status_code == 200 and polled.get_json()["id"] == job["id"]


@pytest.mark.parametrize(("spec", "loc_tail", "words"), [
    ({**SMALL_SPEC, "app_name": "Bad Name"}, ["app_name"], "app_name"),
    ({**SMALL_SPEC, "app_name": "class"}, ["app_name"], "reserved"),
    ({"app_name": "shop", "entities": [{"name": "Select", "fields": [{"name": "x", "type": "string"}]}]},
     ["entities", "0", "name"], "reserved"),
    ({"app_name": "shop", "entities": [{"name": "Item", "fields": [{"name": "from", "type": "string"}]}]},
     ["entities", "0", "fields", "0", "name"], "reserved"),
    ({"app_name": "shop", "entities": [{"name": "Item", "fields": [{"name": "a", "type": "string"},
                                                                  {"name": "a", "type": "integer"}]}]},
     ["entities", "0", "fields", "1", "name"], "duplicate field"),
    ({"app_name": "shop", "entities": [{"name": "Item", "fields": [{"name": "a", "type": "string"}]},
                                       {"name": "Item", "fields": [{"name": "b", "type": "string"}]}]},
     ["entities", "1", "name"], "duplicate entity"),
    ({"app_name": "shop", "entities": [{"name": "Item", "fields": [{"name": "price", "type": "money"}]}]},
     ["entities", "0", "fields", "0", "type"], "money"),
    ({"app_name": "shop", "entities": [{"name": "Item", "fields": [{"name": "id", "type": "integer"}]}]},
     ["entities", "0", "fields", "0", "name"], "id"),
    ({"app_name": "shop", "entities": []}, ["entities"], "entit"),
])
def test_each_kind_of_invalid_spec_is_a_422_naming_the_problem(client, auth_headers, spec, loc_tail, words):
    project_id = new_project(client, auth_headers)
    response = submit(client, auth_headers, project_id, spec)
    assert response.status_code == 422 and response.content_type == PROBLEM
    errors = response.get_json()["errors"]
    assert any(error["loc"][-len(loc_tail):] == loc_tail or error["loc"][1:] == loc_tail for error in errors), errors
    assert any(words in error["msg"] for error in errors), errors


def test_a_prompt_alone_is_refused_saying_a_spec_is_needed(client, auth_headers):
    project_id = new_project(client, auth_headers)
    response = client.post("/api/v2/generate/agentic", json={"project_id": project_id, "prompt": "a todo app"},
                           headers=auth_headers)
    assert response.status_code == 422
    assert "needs a structured `spec`" in response.get_json()["detail"]


def test_submitting_into_another_users_project_is_404(client, make_user):
    _, owner = make_user()
    _, stranger = make_user()
    project_id = new_project(client, owner)
    assert submit(client, stranger, project_id).status_code == 404
    assert submit(client, stranger, str(uuid.uuid4())).status_code == 404


def test_same_idempotency_key_and_body_returns_the_original_job(client, auth_headers):
    project_id = new_project(client, auth_headers)
    first = submit(client, auth_headers, project_id, **{"Idempotency-Key": "order-1"})
    again = submit(client, auth_headers, project_id, **{"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert client.get("/api/v2/jobs", headers=auth_headers).get_json()["total"] == 1


def test_same_idempotency_key_with_another_body_is_409(client, auth_headers):
    project_id = new_project(client, auth_headers)
    submit(client, auth_headers, project_id, SMALL_SPEC, **{"Idempotency-Key": "order-2"})
    other = submit(client, auth_headers, project_id, THREE_ENTITY_SPEC, **{"Idempotency-Key": "order-2"})
    assert other.status_code == 409 and other.content_type == PROBLEM
    assert "different request body" in other.get_json()["detail"]
    other_kind = submit(client, auth_headers, project_id, SMALL_SPEC, kind="agentic", **{"Idempotency-Key": "order-2"})
    assert other_kind.status_code == 409


def test_idempotency_keys_are_per_user(client, make_user):
    _, alice = make_user()
    _, bob = make_user()
    a = submit(client, alice, new_project(client, alice), **{"Idempotency-Key": "k"})
    b = submit(client, bob, new_project(client, bob), **{"Idempotency-Key": "k"})
    assert a.get_json()["id"] != b.get_json()["id"]


def test_expired_idempotency_key_starts_a_new_job(client, auth_headers, db):
    from sqlalchemy import update

    from shared.models import IdempotencyKey
    from shared.models.base import utcnow

    project_id = new_project(client, auth_headers)
    first = submit(client, auth_headers, project_id, **{"Idempotency-Key": "old"}).get_json()
    with db.transaction() as session:
        session.execute(update(IdempotencyKey).values(expires_at=utcnow()))
    second = submit(client, auth_headers, project_id, **{"Idempotency-Key": "old"}).get_json()
    assert second["id"] != first["id"]


def test_unchanged_poll_is_304_and_a_change_is_200(client, auth_headers):
    project_id = new_project(client, auth_headers)
    job = submit(client, auth_headers, project_id).get_json()
    url = f"/api/v2/jobs/{job['id']}"
    first = client.get(url, headers=auth_headers)
    etag = first.headers["ETag"]
    unchanged = client.get(url, headers={**auth_headers, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.data == b""
    assert unchanged.headers["ETag"] == etag and "Retry-After" in unchanged.headers
    client.post(f"{url}/cancel", headers=auth_headers)
    changed = client.get(url, headers={**auth_headers, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.get_json()["status"] == "canceled"
    assert "Retry-After" not in changed.headers, "a finished job needs no more polling"


def test_cancel_a_queued_job_at_once_and_a_finished_one_is_409(client, auth_headers):
    project_id = new_project(client, auth_headers)
    job = submit(client, auth_headers, project_id).get_json()
    canceled = client.post(f"/api/v2/jobs/{job['id']}/cancel", headers=auth_headers)
    assert canceled.status_code == 200
    assert canceled.get_json()["status"] == "canceled" and canceled.get_json()["finished_at"]
    again = client.post(f"/api/v2/jobs/{job['id']}/cancel", headers=auth_headers)
    assert again.status_code == 409 and again.content_type == PROBLEM


def test_another_users_job_is_404(client, make_user):
    _, owner = make_user()
    _, stranger = make_user()
    job = submit(client, owner, new_project(client, owner)).get_json()
    assert client.get(f"/api/v2/jobs/{job['id']}", headers=stranger).status_code == 404
    assert client.post(f"/api/v2/jobs/{job['id']}/cancel", headers=stranger).status_code == 404
    assert client.get("/api/v2/jobs", headers=stranger).get_json()["total"] == 0
    assert client.get(f"/api/v2/jobs/{job['id']}", headers=owner).status_code == 200


def test_job_list_filters_and_paginates(client, auth_headers):
    first_project = new_project(client, auth_headers, "one")
    second_project = new_project(client, auth_headers, "two")
    a = submit(client, auth_headers, first_project, kind="fullstack").get_json()
    submit(client, auth_headers, first_project, kind="agentic")
    submit(client, auth_headers, second_project, kind="agentic")
    client.post(f"/api/v2/jobs/{a['id']}/cancel", headers=auth_headers)

    def ids(query):
        body = client.get(f"/api/v2/jobs?{query}", headers=auth_headers).get_json()
        return body["total"], [job["kind"] for job in body["items"]]

    assert ids("kind=agentic")[0] == 2
    assert ids(f"project_id={first_project}")[0] == 2
    assert ids("status=canceled") == (1, ["fullstack"])
    assert ids("per_page=2&page=2")[0] == 3 and len(ids("per_page=2&page=2")[1]) == 1
    assert client.get("/api/v2/jobs?status=exploded", headers=auth_headers).status_code == 422


def test_fullstack_submissions_are_limited_to_five_a_minute_per_user(client, make_user):
    _, alice = make_user()
    _, bob = make_user()
    project_id = new_project(client, alice)
    statuses = [submit(client, alice, project_id).status_code for _ in range(6)]
    assert statuses == [202] * 5 + [429]
    assert submit(client, bob, new_project(client, bob)).status_code == 202, "limits are per user"
    assert submit(client, alice, project_id, kind="agentic").status_code == 202, "each endpoint has its own limit"


def test_neither_a_spec_nor_a_prompt_is_a_422(client, auth_headers):
    project_id = new_project(client, auth_headers)
    response = client.post("/api/v2/generate/agentic", json={"project_id": project_id}, headers=auth_headers)
    assert response.status_code == 422 and "a `spec` or a `prompt` is required" in response.get_data(as_text=True)


class TestWithTheLanguageModelProvider:
    @pytest.fixture
    def settings_overrides(self):
        # No model call happens at submission: the address only has to be well formed.
        return {"generation_provider": "llm", "llm_base_url": "http://127.0.0.1:9/v1", "llm_model": "peer-model"}

    def test_a_prompt_alone_is_accepted_and_stored_for_the_worker(self, client, auth_headers, db):
        project_id = new_project(client, auth_headers)
        response = client.post("/api/v2/generate/agentic", headers=auth_headers,
                               json={"project_id": project_id, "prompt": "a bookshop API with books and authors"})
        assert response.status_code == 202
        with db.transaction() as session:
            job = session.get(Job, uuid.UUID(response.get_json()["id"]))
            assert job.payload == {"spec": None, "prompt": "a bookshop API with books and authors"}
