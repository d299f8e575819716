"""With the Redis server gone, the API keeps serving: cache bypassed, limits in memory."""
from __future__ import annotations

import logging

import pytest

from tests.conftest import STRONG_PASSWORD, make_settings


@pytest.fixture
def settings(database_url, doomed_redis):
    return make_settings(database_url, doomed_redis.connection_url + "/0")


def test_login_projects_and_writes_survive_redis_stopping(client, doomed_redis, caplog):
    client.post("/api/v2/auth/register", json={"email": "ops@example.com", "password": STRONG_PASSWORD})

    def login():
        response = client.post("/api/v2/auth/login", json={"email": "ops@example.com", "password": STRONG_PASSWORD})
        assert response.status_code == 200, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['access_token']}"}

    headers = login()
    project = client.post("/api/v2/projects", json={"name": "before"}, headers=headers).get_json()
    assert client.get("/api/v2/projects", headers=headers).status_code == 200

    doomed_redis.stop()
    caplog.set_level(logging.WARNING)

    headers = login()
    listed = client.get("/api/v2/projects", headers=headers)
    assert listed.status_code == 200 and listed.get_json()["total"] == 1
    created = client.post("/api/v2/projects", json={"name": "during"}, headers=headers)
    assert created.status_code == 201
    written = client.put(f"/api/v2/projects/{project['id']}/files/a.txt", json={"content": "x"}, headers=headers)
    assert written.status_code == 201
    assert client.get("/api/v2/projects", headers=headers).get_json()["total"] == 2, "no stale list"
    assert any("cache unavailable" in r.getMessage() for r in caplog.records)
    assert any("in-memory" in r.getMessage() or "in memory" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]


def test_login_is_still_limited_in_memory_without_redis(client, doomed_redis):
    doomed_redis.stop()
    statuses = [client.post("/api/v2/auth/login", json={"email": "x@example.com", "password": "Wrong-pass-1"})
                .status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
