"""Projects and files through the HTTP API: ownership, path checks, limits, caching."""
from __future__ import annotations

import io
import uuid
import zipfile

import pytest
from sqlalchemy import update

from shared.models import Project

PROBLEM = "application/problem+json"


@pytest.fixture
def settings_overrides():
    return {"max_file_bytes": 1000, "max_project_bytes": 2500, "max_request_bytes": 64 * 1024}


def create(client, headers, name="shop", **extra):
    response = client.post("/api/v2/projects", json={"name": name, **extra}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def put(client, headers, project_id, path, content="x"):
    return client.put(f"/api/v2/projects/{project_id}/files/{path}", json={"content": content}, headers=headers)


def test_create_get_update_delete(client, auth_headers):
    project = create(client, auth_headers, description="a shop")
    url = f"/api/v2/projects/{project['id']}"
    assert client.get(url, headers=auth_headers).get_json()["description"] == "a shop"
    renamed = client.patch(url, json={"name": "store"}, headers=auth_headers)
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "store"
    assert renamed.get_json()["description"] == "a shop"
    assert client.delete(url, headers=auth_headers).status_code == 204
    assert client.get(url, headers=auth_headers).status_code == 404


def test_duplicate_project_name_is_409(client, auth_headers):
    create(client, auth_headers, name="shop")
    again = client.post("/api/v2/projects", json={"name": "shop"}, headers=auth_headers)
    assert again.status_code == 409 and again.content_type == PROBLEM
    other = create(client, auth_headers, name="other")
    clash = client.patch(f"/api/v2/projects/{other['id']}", json={"name": "shop"}, headers=auth_headers)
    assert clash.status_code == 409


def test_list_is_paginated_newest_first(client, auth_headers):
    for i in range(5):
        create(client, auth_headers, name=f"p{i}")
    page = client.get("/api/v2/projects?page=2&per_page=2", headers=auth_headers).get_json()
    assert page["total"] == 5 and page["page"] == 2 and page["per_page"] == 2
    assert [p["name"] for p in page["items"]] == ["p2", "p1"]
    assert client.get("/api/v2/projects?per_page=1000", headers=auth_headers).status_code == 422


def test_files_round_trip_and_archive(client, auth_headers):
    project = create(client, auth_headers)
    base = f"/api/v2/projects/{project['id']}"
    first = put(client, auth_headers, project["id"], "src/app.py", "print('hi')\n")
    assert first.status_code == 201
    assert first.get_json()["size"] == 12 and len(first.get_json()["sha256"]) == 64
    assert put(client, auth_headers, project["id"], "src/app.py", "print('bye')\n").status_code == 200
    put(client, auth_headers, project["id"], "README.md", "# shop\n")
    listing = client.get(f"{base}/files", headers=auth_headers).get_json()
    assert [f["path"] for f in listing["items"]] == ["README.md", "src/app.py"]
    assert listing["total_bytes"] == 13 + 7
    assert client.get(f"{base}/files/src/app.py", headers=auth_headers).get_json()["content"] == "print('bye')\n"

    archive = client.get(f"{base}/archive", headers=auth_headers)
    assert archive.status_code == 200 and archive.mimetype == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(archive.data)).namelist()
    assert sorted(names) == ["shop/README.md", "shop/src/app.py"]

    assert client.delete(f"{base}/files/README.md", headers=auth_headers).status_code == 204
    assert client.get(f"{base}/files/README.md", headers=auth_headers).status_code == 404
    assert client.get(base, headers=auth_headers).get_json()["file_count"] == 1


@pytest.mark.parametrize(("path", "reason"), [
    ("a/../b.py", "'..' segment"),
    ("../etc/passwd", "'..' segment"),
    ("a\\b.py", "backslash"),
    ("a%5Cb.py", "backslash"),
    ("a%00b.py", "NUL or control character"),
    ("a%07b.py", "NUL or control character"),
    ("a%0Ab.py", "NUL or control character"),
    ("/etc/passwd", "relative"),
    ("%2Fetc/passwd", "relative"),
    ("C:/x.py", "drive letter"),
    ("a//b.py", "empty segment"),
    ("a/b/", "empty segment"),
    ("./a.py", "'.' segment"),
    ("/".join(["d"] * 17), "deeper than 16"),
    ("x" * 129, "longer than 128"),
])
def test_bad_paths_are_422_saying_why(client, auth_headers, path, reason):
    project = create(client, auth_headers)
    response = put(client, auth_headers, project["id"], path)
    assert response.status_code == 422, (path, response.status_code)
    assert response.content_type == PROBLEM
    assert reason in response.get_json()["detail"]
    assert client.get(f"/api/v2/projects/{project['id']}/files/{path}", headers=auth_headers).status_code == 422


def test_file_and_project_size_limits(client, auth_headers):
    project = create(client, auth_headers)
    too_big = put(client, auth_headers, project["id"], "big.txt", "x" * 1001)
    assert too_big.status_code == 422 and "limit is 1000" in too_big.get_json()["detail"]
    assert put(client, auth_headers, project["id"], "a.txt", "x" * 1000).status_code == 201
    assert put(client, auth_headers, project["id"], "b.txt", "x" * 1000).status_code == 201
    over = put(client, auth_headers, project["id"], "c.txt", "x" * 600)
    assert over.status_code == 422 and "limit is 2500" in over.get_json()["detail"]
    # Replacing a file counts only the difference.
    assert put(client, auth_headers, project["id"], "b.txt", "x" * 900).status_code == 200
    multibyte = put(client, auth_headers, project["id"], "u.txt", "é" * 501)
    assert multibyte.status_code == 422, "size is counted in UTF-8 bytes"


def test_request_body_over_the_limit_is_413(client, auth_headers):
    project = create(client, auth_headers)
    response = put(client, auth_headers, project["id"], "huge.txt", "x" * (65 * 1024))
    assert response.status_code == 413 and response.content_type == PROBLEM


def test_another_users_project_and_files_are_404(client, make_user):
    _, owner = make_user()
    _, stranger = make_user()
    project = create(client, owner)
    put(client, owner, project["id"], "secret.txt", "s3cret")
    base = f"/api/v2/projects/{project['id']}"
    attempts = [
        client.get(base, headers=stranger),
        client.patch(base, json={"name": "mine"}, headers=stranger),
        client.delete(base, headers=stranger),
        client.get(f"{base}/files", headers=stranger),
        client.get(f"{base}/files/secret.txt", headers=stranger),
        put(client, stranger, project["id"], "secret.txt", "overwritten"),
        client.delete(f"{base}/files/secret.txt", headers=stranger),
        client.get(f"{base}/archive", headers=stranger),
    ]
    assert [r.status_code for r in attempts] == [404] * len(attempts)
    missing = client.get(f"/api/v2/projects/{uuid.uuid4()}", headers=stranger)
    assert attempts[0].get_json() == missing.get_json(), "another user's project looks exactly like a missing one"
    assert client.get(f"{base}/files/secret.txt", headers=owner).get_json()["content"] == "s3cret"
    assert client.get("/api/v2/projects", headers=stranger).get_json()["total"] == 0


def test_projects_require_a_token(client):
    response = client.get("/api/v2/projects")
    assert response.status_code == 401 and response.content_type == PROBLEM
    assert client.post("/api/v2/projects", json={}).status_code == 401, "auth is checked before the body"


def test_cached_list_is_served_from_cache_and_reflects_writes_at_once(client, auth_headers, db):
    project = create(client, auth_headers, name="before")
    assert client.get("/api/v2/projects", headers=auth_headers).get_json()["items"][0]["name"] == "before"
    # A change made behind the API's back is not seen: the list comes from the cache.
    with db.transaction() as session:
        session.execute(update(Project).where(Project.id == uuid.UUID(project["id"])).values(name="sneaky"))
    assert client.get("/api/v2/projects", headers=auth_headers).get_json()["items"][0]["name"] == "before"
    # Every change through the API is seen by the very next read.
    client.patch(f"/api/v2/projects/{project['id']}", json={"name": "renamed"}, headers=auth_headers)
    assert client.get("/api/v2/projects", headers=auth_headers).get_json()["items"][0]["name"] == "renamed"
    put(client, auth_headers, project["id"], "a.txt", "abc")
    assert client.get("/api/v2/projects", headers=auth_headers).get_json()["items"][0]["file_count"] == 1
    client.delete(f"/api/v2/projects/{project['id']}/files/a.txt", headers=auth_headers)
    assert client.get("/api/v2/projects", headers=auth_headers).get_json()["items"][0]["file_count"] == 0
    create(client, auth_headers, name="second")
    assert client.get("/api/v2/projects", headers=auth_headers).get_json()["total"] == 2
    client.delete(f"/api/v2/projects/{project['id']}", headers=auth_headers)
    assert client.get("/api/v2/projects", headers=auth_headers).get_json()["total"] == 1


def test_cache_entries_are_per_user(client, make_user):
    _, alice = make_user()
    _, bob = make_user()
    create(client, alice, name="alice-project")
    assert client.get("/api/v2/projects", headers=alice).get_json()["total"] == 1
    assert client.get("/api/v2/projects", headers=bob).get_json()["total"] == 0


@pytest.mark.parametrize("text", ["nul\x00byte", "lone\ud800surrogate"])
def test_text_a_database_cannot_store_is_a_422_not_a_500(client, auth_headers, text):
    project = create(client, auth_headers)
    response = put(client, auth_headers, project["id"], "a.txt", text)
    assert response.status_code == 422 and response.get_json()["errors"][0]["loc"] == ["content"]
    described = client.post("/api/v2/projects", json={"name": "x", "description": text}, headers=auth_headers)
    assert described.status_code == 422


def test_the_files_list_is_paginated_by_path(client, auth_headers):
    project = create(client, auth_headers)
    for name in ("d.txt", "a.txt", "c.txt", "b.txt", "e.txt"):
        assert put(client, auth_headers, project["id"], name).status_code == 201
    base = f"/api/v2/projects/{project['id']}/files"
    page = client.get(f"{base}?page=2&per_page=2", headers=auth_headers).get_json()
    assert [f["path"] for f in page["items"]] == ["c.txt", "d.txt"]
    assert (page["page"], page["per_page"], page["total"], page["total_bytes"]) == (2, 2, 5, 5)
    assert [f["path"] for f in client.get(base, headers=auth_headers).get_json()["items"]] == [
        "a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]
    assert client.get(f"{base}?per_page=101", headers=auth_headers).status_code == 422
    assert not any(f["generated"] for f in page["items"]), "files written with PUT are the user's"
