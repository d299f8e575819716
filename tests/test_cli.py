"""The `devora users` commands, run as operators run them: the installed console script in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli import main
from shared.models import AuditEntry, User
from tests.conftest import STRONG_PASSWORD

DEVORA = Path(sys.executable).parent / "devora"


@pytest.fixture
def devora(settings, tmp_path):
    """Run `devora ARGS...` against the test database; a scratch directory keeps any `.env` out."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "DEVORA_ENV": "test"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(DEVORA), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)

    return run


def stored_user(db, email: str) -> User | None:
    with db.transaction() as session:
        return session.scalar(select(User).where(User.email == email))


def test_a_user_created_and_promoted_from_the_cli_can_use_the_admin_api(client, db, devora):
    created = devora("users", "create", "Ops@Example.com", "--password", STRONG_PASSWORD, "--name", "Ops Person")
    assert created.returncode == 0, created.stderr
    assert "ops@example.com" in created.stdout and "role user" in created.stdout
    user = stored_user(db, "ops@example.com")
    assert user.full_name == "Ops Person" and user.role == "user"

    login = client.post("/api/v2/auth/login", json={"email": "ops@example.com", "password": STRONG_PASSWORD})
    assert login.status_code == 200
    headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
    assert client.get("/api/v2/admin/users", headers=headers).status_code == 403

    promoted = devora("users", "promote", "ops@example.com")
    assert promoted.returncode == 0, promoted.stderr
    assert "now an admin" in promoted.stdout
    assert stored_user(db, "ops@example.com").role == "admin"
    # The role is read per request, so the token issued before the promotion works at once.
    listed = client.get("/api/v2/admin/users?q=ops", headers=headers)
    assert listed.status_code == 200 and listed.get_json()["items"][0]["role"] == "admin"
    with db.transaction() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.target_id == str(user.id))
                                  .order_by(AuditEntry.created_at)).all()
        assert [(e.action, e.details) for e in entries] == [
            ("users.create", {"via": "cli", "role": "user"}),
            ("users.promote", {"via": "cli", "previous_role": "user"})]

    again = devora("users", "promote", "ops@example.com")
    assert again.returncode == 0 and "already an admin" in again.stdout


def test_create_with_admin_flag_makes_an_admin(db, devora):
    result = devora("users", "create", "boss@example.com", "--password", STRONG_PASSWORD, "--admin")
    assert result.returncode == 0, result.stderr
    assert stored_user(db, "boss@example.com").role == "admin"


@pytest.mark.parametrize(("email", "password", "message"), [
    ("weak@example.com", "alllowercase1", "password must contain an uppercase letter"),
    ("not-an-email", STRONG_PASSWORD, "email"),
])
def test_create_applies_the_registration_rules(db, devora, email, password, message):
    result = devora("users", "create", email, "--password", password)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert stored_user(db, email) is None


def test_create_refuses_a_taken_email_and_promote_an_unknown_one(make_user, devora):
    make_user("taken@example.com")
    taken = devora("users", "create", "taken@example.com", "--password", STRONG_PASSWORD)
    assert taken.returncode == 1 and "already exists" in taken.stderr
    unknown = devora("users", "promote", "nobody@example.com")
    assert unknown.returncode == 1 and "no account" in unknown.stderr


def test_the_password_prompt_is_hidden_and_confirmed(db, settings, tmp_path, monkeypatch):
    # A subprocess without a terminal cannot show a hidden prompt, so the prompt runs in-process.
    monkeypatch.chdir(tmp_path)
    typed = f"{STRONG_PASSWORD}\nsomething-else\n{STRONG_PASSWORD}\n{STRONG_PASSWORD}\n"
    result = CliRunner().invoke(main, ["users", "create", "prompted@example.com"], input=typed,
                                env={"DATABASE_URL": settings.database_url, "DEVORA_ENV": "test"})
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output and STRONG_PASSWORD not in result.output
    assert stored_user(db, "prompted@example.com").password_hash is not None


def sandbox_check(tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DEVORA), "sandbox", "check"], env={**os.environ, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_sandbox_check_says_what_this_machine_can_do(tmp_path):
    checked = sandbox_check(tmp_path)
    if "sandbox available (" not in checked.stdout:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the sandbox is required under CI: {checked.stdout}{checked.stderr}")
        pytest.skip(f"bubblewrap sandbox not available here: {checked.stdout}")
    assert checked.returncode == 0 and checked.stdout.startswith("sandbox available (bwrap, Python ")
    unsafe = sandbox_check(tmp_path, SANDBOX_BACKEND="none", SANDBOX_ALLOW_UNSANDBOXED="true")
    assert unsafe.returncode == 0 and unsafe.stdout.startswith("sandbox disabled-unsafe (SANDBOX_BACKEND=none")
    broken = sandbox_check(tmp_path, SANDBOX_PYTHON=str(tmp_path / "no-such-python"))
    assert broken.returncode == 1 and broken.stdout.startswith(f"sandbox unavailable ({tmp_path}/no-such-python: ")
