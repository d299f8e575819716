"""Render the generated project's end-to-end tests (unittest, standard library only)."""
from __future__ import annotations

from typing import Any

from shared.generator.text import fill, py_literal
from shared.schemas.spec import AppSpec, EntitySpec, FieldSpec, GenerationKind

_HEADER = '''"""End-to-end tests of the {{app_name}} API; they need only the Python standard library."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import unittest
from typing import Any, Dict, Optional, Tuple

from {{app_name}}.app import create_server
from {{app_name}}.models import ENTITIES, PAGE_SIZE

_state: Dict[str, Any] = {}


def setUpModule() -> None:
    tmpdir = tempfile.mkdtemp(prefix="{{app_name}}-test-")
    server = create_server("127.0.0.1", 0, os.path.join(tmpdir, "test.sqlite3"), quiet=True)
    # A short poll interval keeps shutdown() fast at the end of the run.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    _state.update(tmpdir=tmpdir, server=server, thread=thread)


def tearDownModule() -> None:
    _state["server"].shutdown()
    _state["server"].server_close()
    _state["thread"].join(timeout=5)
    shutil.rmtree(_state["tmpdir"], ignore_errors=True)


class _ApiTestCase(unittest.TestCase):
    def setUp(self) -> None:
        # Every test starts from empty tables, so unique sample values never collide between tests.
        conn = sqlite3.connect(_state["server"].db_path)
        try:
            with conn:
                for entity in ENTITIES:
                    conn.execute('DELETE FROM "%s"' % entity.plural)
        finally:
            conn.close()

    def request(self, method: str, path: str, body: Any = None) -> Tuple[int, Any]:
        host, port = _state["server"].server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            headers: Dict[str, str] = {}
            data: Optional[bytes] = None
            if body is not None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        if (response.getheader("Content-Type") or "").startswith("application/json"):
            return response.status, json.loads(raw.decode("utf-8"))
        return response.status, raw.decode("utf-8")


class _CrudTests:
    """CRUD checks shared by every entity; subclasses set PATH, SAMPLE, OTHER and INVALID."""

    PATH = ""
    SAMPLE: Dict[str, Any] = {}
    OTHER: Dict[str, Any] = {}
    INVALID: Tuple[str, Any] = ("", None)

    def create(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        status, body = self.request("POST", self.PATH, payload)
        self.assertEqual(status, 201, body)
        return body

    def test_create_and_get(self) -> None:
        created = self.create(self.SAMPLE)
        self.assertIsInstance(created["id"], int)
        self.assertEqual(created, dict(self.SAMPLE, id=created["id"]))
        status, body = self.request("GET", "%s/%d" % (self.PATH, created["id"]))
        self.assertEqual(status, 200, body)
        self.assertEqual(body, created)

    def test_list(self) -> None:
        first = self.create(self.SAMPLE)
        second = self.create(self.OTHER)
        status, body = self.request("GET", self.PATH)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["total"], 2)
        self.assertEqual(body["items"], [first, second][:PAGE_SIZE])
        status, body = self.request("GET", self.PATH + "?limit=1&offset=1")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["items"], [second])

    def test_update(self) -> None:
        created = self.create(self.SAMPLE)
        path = "%s/%d" % (self.PATH, created["id"])
        status, body = self.request("PUT", path, self.OTHER)
        self.assertEqual(status, 200, body)
        self.assertEqual(body, dict(self.OTHER, id=created["id"]))
        name = self.INVALID[0]
        status, body = self.request("PUT", path, {name: self.SAMPLE[name]})
        self.assertEqual(status, 200, body)
        self.assertEqual(body[name], self.SAMPLE[name])
        status, fetched = self.request("GET", path)
        self.assertEqual(fetched, body)

    def test_delete(self) -> None:
        created = self.create(self.SAMPLE)
        path = "%s/%d" % (self.PATH, created["id"])
        status, _ = self.request("DELETE", path)
        self.assertEqual(status, 204)
        status, _ = self.request("GET", path)
        self.assertEqual(status, 404)
        status, _ = self.request("DELETE", path)
        self.assertEqual(status, 404)

    def test_rejects_invalid_value(self) -> None:
        name, value = self.INVALID
        payload = dict(self.SAMPLE)
        payload[name] = value
        status, body = self.request("POST", self.PATH, payload)
        self.assertEqual(status, 400, body)
        self.assertIn(name, body["fields"])
        status, body = self.request("GET", self.PATH)
        self.assertEqual(body["total"], 0)

    def test_unknown_record(self) -> None:
        status, _ = self.request("GET", self.PATH + "/999999")
        self.assertEqual(status, 404)
        status, _ = self.request("PUT", self.PATH + "/999999", self.SAMPLE)
        self.assertEqual(status, 404)
'''

_ROUTING = '''

class RoutingTest(_ApiTestCase):
    def test_index_lists_resources(self) -> None:
        status, body = self.request("GET", "/api")
        self.assertEqual(status, 200, body)
        self.assertEqual([item["path"] for item in body["resources"]], {{paths}})

    def test_unknown_path(self) -> None:
        status, body = self.request("GET", "/api/__missing__")
        self.assertEqual(status, 404, body)

    def test_invalid_json(self) -> None:
        status, body = self.request("POST", {{first_path}}, b"{not json")
        self.assertEqual(status, 400, body)
        status, body = self.request("POST", {{first_path}}, [1, 2])
        self.assertEqual(status, 400, body)
'''

_FRONTEND = '''
    def test_serves_web_page(self) -> None:
        status, body = self.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn("<!DOCTYPE html>", body)
        status, body = self.request("GET", "/app.js")
        self.assertEqual(status, 200)
        self.assertIn("/api/", body)
'''

_TOO_LONG = '''
    def test_rejects_too_long_{{name}}(self) -> None:
        payload = dict(self.SAMPLE)
        payload[{{key}}] = "x" * {{length}}
        status, body = self.request("POST", self.PATH, payload)
        self.assertEqual(status, 400, body)
        self.assertIn({{key}}, body["fields"])
'''

_REQUIRED = '''
    def test_rejects_missing_required_fields(self) -> None:
        status, body = self.request("POST", self.PATH, {})
        self.assertEqual(status, 400, body)
        self.assertEqual(sorted(body["fields"]), {{names}})
'''

_UNIQUE = '''
    def test_rejects_duplicate_unique_value(self) -> None:
        self.create(self.SAMPLE)
        status, body = self.request("POST", self.PATH, self.SAMPLE)
        self.assertEqual(status, 409, body)
        self.assertIn(list(body["fields"])[0], {{names}})
'''

_INVALID_VALUES: dict[str, Any] = {
    "string": 12345,
    "text": 12345,
    "integer": "not a number",
    "float": "not a number",
    "boolean": "yes",
    "date": "2024-13-45",
    "datetime": "not a datetime",
}


def sample_value(field: FieldSpec, n: int) -> Any:
    """Return the n-th (1 or 2) valid test value of a field, already in the API's normalized form."""
    if field.type == "string":
        # Keep the tail so the distinguishing number survives a short max_length.
        return f"{field.name}-{n}"[-(field.max_length or 255):]
    if field.type == "text":
        return f"Text {n} for {field.name}."
    if field.type == "integer":
        return 7 * n
    if field.type == "float":
        return n + 0.5
    if field.type == "boolean":
        return n == 1
    if field.type == "date":
        return f"2024-01-{10 + n:02d}"
    return f"2024-02-{10 + n:02d}T09:30:00"


def _payload(entity: EntitySpec, n: int) -> str:
    items = [f"        {py_literal(field.name)}: {py_literal(sample_value(field, n))}," for field in entity.fields]
    return "{\n" + "\n".join(items) + "\n    }"


def _entity_class(entity: EntitySpec) -> str:
    first = entity.fields[0]
    lines = [
        "",
        "",
        f"class {entity.name}ApiTest(_CrudTests, _ApiTestCase):",
        f"    PATH = {py_literal('/api/' + (entity.plural or ''))}",
        f"    SAMPLE = {_payload(entity, 1)}",
        f"    OTHER = {_payload(entity, 2)}",
        f"    INVALID = ({py_literal(first.name)}, {py_literal(_INVALID_VALUES[first.type])})",
    ]
    body = "\n".join(lines) + "\n"
    required = sorted(field.name for field in entity.fields if field.required)
    if required:
        body += fill(_REQUIRED, names=py_literal(required))
    unique = [field.name for field in entity.fields if field.unique]
    if unique:
        body += fill(_UNIQUE, names=py_literal(unique))
    for field in entity.fields:
        if field.type == "string" and field.max_length is not None:
            body += fill(_TOO_LONG, name=field.name, key=py_literal(field.name), length=str(field.max_length + 1))
    return body


def render_tests(spec: AppSpec, kind: GenerationKind) -> str:
    """Return tests/test_api.py for a spec."""
    paths = [f"/api/{entity.plural}" for entity in spec.entities]
    text = fill(_HEADER, app_name=spec.app_name)
    text += "".join(_entity_class(entity) for entity in spec.entities)
    text += fill(_ROUTING, paths=py_literal(paths), first_path=py_literal(paths[0]))
    if kind == GenerationKind.FULLSTACK:
        text += _FRONTEND
    return text
