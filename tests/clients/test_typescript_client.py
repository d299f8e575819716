"""The committed TypeScript types match openapi.yaml, and the typed example compiles against them.

`make test` installs the npm packages (`npm ci`) before pytest when npm is on the machine;
these tests only run the installed tools and need no network.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from shared.settings import PROJECT_ROOT
from tests.conftest import IN_CI

CLIENT = PROJECT_ROOT / "clients" / "typescript"
BIN = CLIENT / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def node_tools():
    if not (BIN / "openapi-typescript").exists() or shutil.which("node") is None:
        message = f"the TypeScript tools are not installed: run `npm ci` in {CLIENT} (make test does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return BIN


def run(*argv: str, cwd=CLIENT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=180)


def test_the_committed_types_are_generated_from_openapi_yaml(node_tools):
    result = run("npm", "run", "--silent", "check")
    assert result.returncode == 0, (
        "devora-api-types.ts is out of date: run `make types` (or `npm run generate` in clients/typescript)\n"
        + result.stdout + result.stderr)


def test_the_check_fails_when_the_types_differ(node_tools, tmp_path):
    stale = tmp_path / "devora-api-types.ts"
    stale.write_text((CLIENT / "devora-api-types.ts").read_text().replace('"succeeded"', '"done"'))
    result = run(str(node_tools / "openapi-typescript"), str(PROJECT_ROOT / "openapi.yaml"), "--output", str(stale),
                 "--default-non-nullable", "false", "--check")
    assert result.returncode != 0, result.stdout + result.stderr


def test_the_example_client_compiles(node_tools):
    result = run(str(node_tools / "tsc"), "--noEmit", "-p", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def schema_type(name: str) -> str:
    """The generated type of one component schema, up to the next one."""
    types = (CLIENT / "devora-api-types.ts").read_text()
    start = types.index(f"\n        {name}: {{")
    end = re.compile(r"\n        [A-Za-z]+: \{").search(types, start + 1)
    return types[start:end.start() if end else None]


def test_request_bodies_leave_defaulted_fields_optional_and_responses_keep_them_required():
    # openapi-typescript 7 would otherwise make `options` and `required` mandatory in a spec.
    assert "required?: boolean;" in schema_type("FieldSpec")
    assert "options?: " in schema_type("AppSpec")
    assert "\n            token_type: string;" in schema_type("TokenResponse")
