"""Generating into a project again replaces the previous generation's files and keeps the user's."""
from __future__ import annotations

from tests.jobs_helpers import SMALL_SPEC, new_project, submit, wait_for_job

LIBRARY_SPEC = {"app_name": "library", "entities": [{"name": "Loan", "fields": [{"name": "due", "type": "date"}]}]}
SHOP_SPEC = {"app_name": "shop", "entities": [{"name": "Item", "fields": [{"name": "label", "type": "string"}]}]}


def generate(client, headers, project_id, spec) -> dict:
    job = submit(client, headers, project_id, spec, kind="agentic")
    assert job.status_code == 202, job.get_json()
    finished = wait_for_job(client, headers, job.get_json()["id"])
    assert finished["status"] == "succeeded", finished
    return finished["result"]


def files(client, headers, project_id) -> dict[str, dict]:
    listed = client.get(f"/api/v2/projects/{project_id}/files?per_page=100", headers=headers).get_json()
    return {f["path"]: f for f in listed["items"]}


def put(client, headers, project_id, path, content):
    response = client.put(f"/api/v2/projects/{project_id}/files/{path}", json={"content": content}, headers=headers)
    assert response.status_code in (200, 201), response.get_json()


def test_each_generation_replaces_the_last_one_and_keeps_what_the_user_wrote(client, auth_headers, worker):
    project_id = new_project(client, auth_headers)
    put(client, auth_headers, project_id, "notes.md", "my notes\n")
    put(client, auth_headers, project_id, "README.md", "my readme\n")

    first = generate(client, auth_headers, project_id, SMALL_SPEC)
    assert first["replaced"] == ["README.md"], "the user's README had the path the generation writes"
    assert first["removed"] == []
    assert set(first["added"]) == set(first["files"]) - {"README.md"}
    listed = files(client, auth_headers, project_id)
    assert set(listed) == set(first["files"]) | {"notes.md"}
    assert not listed["notes.md"]["generated"] and listed["README.md"]["generated"]
    assert any(path.startswith("notes/") for path in first["files"])

    # The user takes one generated file over: it is theirs from now on.
    put(client, auth_headers, project_id, "notes/app.py", "# my own app\n")
    assert not files(client, auth_headers, project_id)["notes/app.py"]["generated"]

    second = generate(client, auth_headers, project_id, LIBRARY_SPEC)
    earlier_only = set(first["files"]) - set(second["files"]) - {"notes/app.py"}
    assert set(second["removed"]) == earlier_only and earlier_only, second
    assert "notes/app.py" not in second["removed"]
    assert set(second["replaced"]) == set(first["files"]) & set(second["files"])
    assert set(second["added"]) == set(second["files"]) - set(first["files"])
    listed = files(client, auth_headers, project_id)
    assert set(listed) == set(second["files"]) | {"notes.md", "notes/app.py"}
    content = client.get(f"/api/v2/projects/{project_id}/files/notes/app.py", headers=auth_headers).get_json()
    assert content["content"] == "# my own app\n"
    project = client.get(f"/api/v2/projects/{project_id}", headers=auth_headers).get_json()
    assert project["file_count"] == len(listed)
    assert project["total_bytes"] == sum(f["size"] for f in listed.values())

    third = generate(client, auth_headers, project_id, SHOP_SPEC)
    assert not any(path.startswith("notes/") for path in third["removed"]), "user files are never removed"
    assert {p for p in second["files"] if p.startswith("library/")} <= set(third["removed"])
    assert set(files(client, auth_headers, project_id)) == set(third["files"]) | {"notes.md", "notes/app.py"}
