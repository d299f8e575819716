"""Source templates of the generated package's HTTP layer (`{{name}}` tokens are filled by render)."""

INIT_PY = '''"""{{app_name}}: a CRUD JSON API over SQLite, using only the Python standard library."""

__version__ = "1.0.0"
'''

MAIN_PY = '''"""Run the {{app_name}} API: ``python -m {{app_name}} [port] [--host HOST] [--db PATH]``."""

import sys

from .app import main

if __name__ == "__main__":
    sys.exit(main())
'''

APP_PY = '''"""HTTP JSON API of {{app_name}}, built on http.server and sqlite3."""

from __future__ import annotations

import argparse
import json
import os
import re
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

from . import store
from .models import DEFAULT_PORT, ENTITIES, ENTITIES_BY_PLURAL, MAX_PAGE_SIZE, PAGE_SIZE, Entity
from .validation import ValidationFailed, validate_payload

APP_NAME = "{{app_name}}"
DEFAULT_DB_PATH = "{{app_name}}.sqlite3"
MAX_BODY_BYTES = 1024 * 1024
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Only these exact URL paths map to files, so no request can reach anything else on disk.
STATIC_FILES: Dict[str, Tuple[str, str]] = {{static_files}}
STATIC_HEADERS = {
    "Content-Security-Policy": "default-src 'self'",
    "X-Content-Type-Options": "nosniff",
}
_RECORD_ID = re.compile(r"[1-9][0-9]{0,17}")


class ApiError(Exception):
    """An error that maps directly onto an HTTP error response."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        fields: Optional[Dict[str, str]] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Dict[str, Any] = {"error": message}
        if fields:
            self.body["fields"] = fields
        self.headers = headers or {}


def _reject_constant(name: str) -> Any:
    raise ValueError("%s is not allowed in JSON bodies" % name)


def _query_int(query: Dict[str, List[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        number = int(values[-1])
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ApiError(HTTPStatus.BAD_REQUEST, "%s must be an integer between %d and %d" % (name, low, high))
    return number


def api_index() -> Dict[str, Any]:
    """Describe the available resources."""
    return {
        "app": APP_NAME,
        "resources": [
            {"entity": entity.name, "path": "/api/" + entity.plural, "fields": list(entity.field_names)}
            for entity in ENTITIES
        ],
    }


class ApiHandler(BaseHTTPRequestHandler):
    """Routes requests to the CRUD operations of each entity."""

    server_version = "{{app_name}}/1.0"
    server: "ApiServer"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def _handle(self, method: str) -> None:
        headers: Dict[str, str] = {}
        try:
            url = urlsplit(self.path)
            if method == "GET" and url.path in STATIC_FILES:
                self._send_static(*STATIC_FILES[url.path])
                return
            status, body = self._route(method, url.path, parse_qs(url.query))
        except ApiError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        except Exception:
            # The full traceback goes to stderr for the operator; clients only get a generic message.
            traceback.print_exc()
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal server error"}
        self._send_json(status, body, headers)

    def _route(self, method: str, path: str, query: Dict[str, List[str]]) -> Tuple[HTTPStatus, Any]:
        parts = [part for part in path.split("/") if part]
        if parts in ([], ["api"]):
            if method != "GET":
                raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed", headers={"Allow": "GET"})
            return HTTPStatus.OK, api_index()
        if len(parts) not in (2, 3) or parts[0] != "api" or parts[1] not in ENTITIES_BY_PLURAL:
            raise ApiError(HTTPStatus.NOT_FOUND, "not found")
        entity = ENTITIES_BY_PLURAL[parts[1]]
        db_path = self.server.db_path
        if len(parts) == 2:
            if method == "GET":
                limit = _query_int(query, "limit", PAGE_SIZE, 1, MAX_PAGE_SIZE)
                offset = _query_int(query, "offset", 0, 0, 2**62)
                items, total = store.list_records(db_path, entity, limit, offset)
                return HTTPStatus.OK, {"items": items, "total": total, "limit": limit, "offset": offset}
            if method == "POST":
                values = self._validated(entity, self._read_json(), None)
                return HTTPStatus.CREATED, self._write(store.create_record, db_path, entity, values)
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed", headers={"Allow": "GET, POST"})
        if not _RECORD_ID.fullmatch(parts[2]):
            raise ApiError(HTTPStatus.NOT_FOUND, "not found")
        record_id = int(parts[2])
        if method not in ("GET", "PUT", "DELETE"):
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed", headers={"Allow": "GET, PUT, DELETE"})
        current = store.get_record(db_path, entity, record_id)
        if current is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "%s %d not found" % (entity.name, record_id))
        if method == "GET":
            return HTTPStatus.OK, current
        if method == "DELETE":
            store.delete_record(db_path, entity, record_id)
            return HTTPStatus.NO_CONTENT, None
        values = self._validated(entity, self._read_json(), current)
        updated = self._write(store.update_record, db_path, entity, record_id, values)
        if updated is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "%s %d not found" % (entity.name, record_id))
        return HTTPStatus.OK, updated

    @staticmethod
    def _validated(entity: Entity, payload: Dict[str, Any], current: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        try:
            return validate_payload(entity, payload, current)
        except ValidationFailed as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid %s" % entity.name, exc.errors)

    @staticmethod
    def _write(operation: Any, *args: Any) -> Any:
        try:
            return operation(*args)
        except store.Conflict as exc:
            message = "another record already has this %s" % exc.field
            raise ApiError(HTTPStatus.CONFLICT, message, {exc.field: "must be unique"})

    def _read_json(self) -> Dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid Content-Length header")
        if length < 0:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid Content-Length header")
        if length > MAX_BODY_BYTES:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body is larger than %d bytes" % MAX_BODY_BYTES)
        raw = self.rfile.read(length)
        try:
            payload = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ApiError(HTTPStatus.BAD_REQUEST, "request body must be valid JSON")
        if not isinstance(payload, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
        return payload

    def _send_json(self, status: HTTPStatus, body: Any, headers: Dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status == HTTPStatus.NO_CONTENT:
            self.end_headers()
            return
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_static(self, filename: str, content_type: str) -> None:
        try:
            data = (STATIC_DIR / filename).read_bytes()
        except OSError:
            raise ApiError(HTTPStatus.NOT_FOUND, "not found")
        self.send_response(HTTPStatus.OK)
        for name, value in STATIC_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ApiServer(ThreadingHTTPServer):
    """A threaded HTTP server bound to one SQLite database file."""

    daemon_threads = True

    def __init__(self, address: Tuple[str, int], db_path: str, quiet: bool = False) -> None:
        self.db_path = db_path
        self.quiet = quiet
        store.init_db(db_path)
        super().__init__(address, ApiHandler)


def create_server(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, db_path: str = DEFAULT_DB_PATH, quiet: bool = False
) -> ApiServer:
    """Create missing tables and bind a server (port 0 picks a free port)."""
    return ApiServer((host, port), db_path, quiet=quiet)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Serve the API until interrupted; the port comes from argv, then $PORT, then the default."""
    parser = argparse.ArgumentParser(prog=APP_NAME, description="Serve the %s JSON API." % APP_NAME)
    parser.add_argument("port", nargs="?", type=_port, help="port to listen on (default: $PORT or %d)" % DEFAULT_PORT)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="interface to bind")
    parser.add_argument(
        "--db", default=os.environ.get("DATABASE_PATH", DEFAULT_DB_PATH), help="SQLite database file"
    )
    args = parser.parse_args(argv)
    port = args.port
    if port is None:
        try:
            port = _port(os.environ.get("PORT") or str(DEFAULT_PORT))
        except ValueError:
            parser.error("PORT must be an integer between 0 and 65535")
    server = create_server(args.host, port, args.db)
    host, bound_port = server.server_address[:2]
    print("%s listening on http://%s:%d/ (database: %s)" % (APP_NAME, host, bound_port, args.db), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
'''
