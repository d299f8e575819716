"""Passwords, tokens, Stripe keys and webhook secrets never reach the logs, on the web or the worker side."""
from __future__ import annotations

import json
import logging

import pytest

from tests.jobs_helpers import wait_for_job
from tests.peers.stripe_events import event, invoice, post_webhook

PASSWORD = "Very-Secret-Pass-42"
STRIPE_KEY = "sk_test_LEAKCANARY0123456789"
WEBHOOK_SECRET = "whsec_LEAKCANARY9876543210"


@pytest.fixture
def settings_overrides(stripe_stub):
    return {"stripe_api_key": STRIPE_KEY, "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": stripe_stub.url, "stripe_max_network_retries": 0, "job_max_attempts": 1,
            "log_level": "DEBUG"}


def test_secrets_never_appear_in_captured_logs(client, worker, stripe_stub, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    tokens = client.post("/api/v2/auth/register", json={"email": "log@example.com", "password": PASSWORD}).get_json()
    client.post("/api/v2/auth/login", json={"email": "log@example.com", "password": "Wrong-" + PASSWORD})
    client.post("/api/v2/auth/login", json={"email": "log@example.com", "password": PASSWORD})
    rotated = client.post("/api/v2/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).get_json()
    client.post("/api/v2/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse: revokes
    headers = {"Authorization": f"Bearer {rotated['access_token']}"}

    payload = event("invoice.paid", invoice("in_log", "cus_log"))
    post_webhook(client, payload, "whsec_wrong")
    post_webhook(client, payload, WEBHOOK_SECRET)

    stripe_stub.fail_next("/v1/customers", [401])
    assert client.post("/api/v2/billing/checkout", json={"plan": "pro"}, headers=headers).status_code == 502
    stripe_stub.fail_next("/v1/customers", [500])
    job = client.post("/api/v2/billing/sync", headers=headers).get_json()
    assert wait_for_job(client, headers, job["id"])["status"] == "failed"

    captured = caplog.text + "".join(capfd.readouterr())
    assert "Stripe create_customer failed" in captured, "the failures were logged"
    for secret in (PASSWORD, STRIPE_KEY, WEBHOOK_SECRET, tokens["access_token"], tokens["refresh_token"],
                   rotated["access_token"], rotated["refresh_token"]):
        assert secret not in captured, f"leaked: {secret[:12]}..."


def test_log_lines_are_json_with_request_user_and_job_ids(app, client, make_user, worker, capsys):
    user, headers = make_user()

    @app.get("/log-probe")
    def log_probe():
        from web.auth import current_user

        current_user()
        logging.getLogger("web.probe").warning("inside a request")
        return {}

    client.get("/log-probe", headers={**headers, "X-Request-ID": "rid-8"})
    logging.getLogger("web.probe").warning("outside a request")
    project = client.post("/api/v2/projects", json={"name": "logs"}, headers=headers).get_json()
    job = client.post("/api/v2/generate/agentic", json={"project_id": project["id"], "spec": {
        "app_name": "logs", "entities": [{"name": "Line", "fields": [{"name": "text", "type": "string"}]}]}},
        headers=headers).get_json()
    wait_for_job(client, headers, job["id"])

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    inside = next(line for line in lines if line["message"] == "inside a request")
    assert inside["request_id"] == "rid-8" and inside["user_id"] == str(user.id) and inside["level"] == "WARNING"
    outside = next(line for line in lines if line["message"] == "outside a request")
    assert "request_id" not in outside and "user_id" not in outside
    worker_lines = [line for line in lines if line.get("job_id") == job["id"]]
    assert worker_lines and all(line.get("task_id") for line in worker_lines)
