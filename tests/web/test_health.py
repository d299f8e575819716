"""/healthz and /readyz: readiness names what is unreachable, and recovers when it is back."""
from __future__ import annotations

import pytest

from tests.conftest import make_settings, restart_valkey


@pytest.fixture
def settings(database_url, redis_url, doomed_redis, settings_overrides):
    # Redis is its own server here; the broker stays on the session's.
    return make_settings(database_url, doomed_redis.connection_url + "/0", broker_url=redis_url, **settings_overrides)


def test_readyz_names_redis_while_it_is_down_and_recovers(client, doomed_redis):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "redis": "ok", "broker": "ok", "billing": "ok"}
    assert body["sandbox"]["state"] in ("available", "unavailable", "disabled-unsafe") and body["sandbox"]["detail"]

    port = doomed_redis.port
    doomed_redis.stop()
    down = client.get("/readyz")
    assert down.status_code == 503 and down.content_type == "application/problem+json"
    body = down.get_json()
    assert body["detail"] == "not ready: redis unreachable"
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok"
    assert body["checks"]["redis"].startswith("unreachable")
    assert "sandbox" not in body["detail"] and body["sandbox"]["state"] in ("available", "unavailable", "disabled-unsafe")
    assert client.get("/healthz").status_code == 200, "liveness does not depend on Redis"

    revived = restart_valkey(port)
    try:
        assert client.get("/readyz").status_code == 200
    finally:
        revived.stop()


def test_request_id_is_accepted_and_returned(client):
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    made_up = client.get("/healthz", headers={"X-Request-ID": "<script>" + "x" * 200})
    assert len(made_up.headers["X-Request-ID"]) == 32, "an unsafe id is replaced, not echoed"


@pytest.mark.parametrize("settings_overrides", [{"sandbox_backend": "none", "sandbox_allow_unsandboxed": True}])
def test_readyz_reports_an_unsafe_sandbox_without_failing(client, settings_overrides):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    sandbox = ready.get_json()["sandbox"]
    assert sandbox["state"] == "disabled-unsafe"
    assert "SANDBOX_BACKEND=none" in sandbox["detail"] and "without a sandbox" in sandbox["detail"]
