"""openapi.yaml at the repository root is exactly what the app serves, and `--check` says when it is not."""
from __future__ import annotations

import yaml
from click.testing import CliRunner

from cli import main
from shared.settings import PROJECT_ROOT
from tests.conftest import make_settings
from web import create_app
from web.api_document import document_yaml

COMMITTED = PROJECT_ROOT / "openapi.yaml"


def test_the_committed_document_is_the_one_the_app_produces():
    # Test settings differ from the export's defaults: the document must not depend on them.
    app = create_app(make_settings("sqlite://", "redis://127.0.0.1:1/0", ratelimit_default="7 per minute"))
    produced = document_yaml(app)
    assert COMMITTED.read_text(encoding="utf-8") == produced, (
        "openapi.yaml is out of date: run `.venv/bin/devora openapi export` (or `make openapi`) and commit it")
    assert yaml.safe_load(produced) == app.test_client().get("/api/v2/openapi.json").get_json()


def test_check_passes_on_the_committed_file_and_fails_on_a_changed_copy(tmp_path):
    assert CliRunner().invoke(main, ["openapi", "export", "--check"]).exit_code == 0
    stale = tmp_path / "openapi.yaml"
    stale.write_text(COMMITTED.read_text(encoding="utf-8").replace("operationId: getJob", "operationId: fetchJob"))
    result = CliRunner().invoke(main, ["openapi", "export", "--check", "--output", str(stale)])
    assert result.exit_code == 1 and "differs from the app's document" in result.output


def test_export_writes_the_document(tmp_path):
    target = tmp_path / "out.yaml"
    result = CliRunner().invoke(main, ["openapi", "export", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")
