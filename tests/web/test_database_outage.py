"""The database away (a restart, a failover): a 503 problem the client can retry, never a 500."""
from __future__ import annotations

from tests.conftest import make_settings
from tests.peers.processes import free_port


def test_requests_while_the_database_is_unreachable_answer_503_with_retry_after(redis_url):
    from web import create_app

    # A PostgreSQL URL on a port where nothing listens: every connection attempt is refused.
    app = create_app(make_settings(f"postgresql://postgres@127.0.0.1:{free_port()}/devora", redis_url))
    client = app.test_client()
    response = client.post("/api/v2/auth/login", json={"email": "ada@example.com", "password": "Correct-Horse-9"})
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["type"].endswith("/database-unavailable") and "try again" in problem["detail"]
    assert response.headers["Retry-After"] == "2"
    assert client.get("/healthz").status_code == 200, "liveness does not depend on the database"
