"""Helpers shared by the job tests: specs, submission and polling over HTTP."""
from __future__ import annotations

import time

SMALL_SPEC = {"app_name": "notes", "entities": [{"name": "Note", "fields": [{"name": "title", "type": "string"}]}]}
THREE_ENTITY_SPEC = {
    "app_name": "bookshop",
    "entities": [
        {"name": "Author", "fields": [{"name": "name", "type": "string"}, {"name": "born", "type": "date"}]},
        {"name": "Book", "fields": [
            {"name": "title", "type": "string"}, {"name": "year", "type": "integer"},
            {"name": "price", "type": "float"}, {"name": "in_print", "type": "boolean"},
            {"name": "summary", "type": "text", "required": False}]},
        {"name": "Review", "fields": [{"name": "body", "type": "text"}, {"name": "posted_at", "type": "datetime"},
                                      {"name": "stars", "type": "integer"}]},
    ],
}


def big_spec(entities: int = 12, fields: int = 30) -> dict:
    """A spec whose validation takes a few seconds: long enough to act on a running job."""
    types = ["string", "text", "integer", "float", "boolean", "date", "datetime"]
    return {"app_name": "bigapp", "entities": [
        {"name": f"Thing{e}", "fields": [{"name": f"field_{f}", "type": types[f % len(types)]}
                                         for f in range(fields)]}
        for e in range(entities)]}


def new_project(client, headers, name="target") -> str:
    response = client.post("/api/v2/projects", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def submit(client, headers, project_id, spec=SMALL_SPEC, kind="fullstack", **extra_headers):
    return client.post(f"/api/v2/generate/{kind}", json={"project_id": project_id, "spec": spec},
                       headers={**headers, **extra_headers})


def wait_for_job(client, headers, job_id, statuses=("succeeded", "failed", "canceled"), timeout=90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/v2/jobs/{job_id}", headers=headers)
        if response.status_code == 429:  # polled faster than the poll limit allows: wait as told
            time.sleep(float(response.headers.get("Retry-After", 1)))
            continue
        job = response.get_json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
        time.sleep(0.1)


def follow_job(client, headers, job_id, timeout=90.0) -> tuple[dict, list[dict]]:
    """Poll a job to its end; returns it finished and every distinct progress seen on the way."""
    deadline = time.monotonic() + timeout
    seen: list[dict] = []
    while True:
        job = client.get(f"/api/v2/jobs/{job_id}", headers=headers).get_json()
        if not seen or seen[-1] != job["progress"]:
            seen.append(job["progress"])
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job, seen
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
        time.sleep(0.1)
