"""Source templates of the generated package's data layer: models, validation and SQLite storage."""

MODELS_PY = '''"""Entity definitions of {{app_name}}, generated from its spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

PAGE_SIZE = {{page_size}}
MAX_PAGE_SIZE = {{max_page_size}}
DEFAULT_PORT = {{port}}


@dataclass(frozen=True)
class Field:
    """One column; ``type`` is one of string, text, integer, float, boolean, date, datetime."""

    name: str
    type: str
    required: bool = True
    unique: bool = False
    max_length: Optional[int] = None


@dataclass(frozen=True)
class Entity:
    """A record type served under ``/api/<plural>`` and stored in the table ``<plural>``."""

    name: str
    plural: str
    fields: Tuple[Field, ...]
    description: str = ""

    @property
    def field_names(self) -> Tuple[str, ...]:
        """Return the names of the entity's fields, without ``id``."""
        return tuple(field.name for field in self.fields)


ENTITIES: Tuple[Entity, ...] = (
{{entities}}
)

ENTITIES_BY_PLURAL: Dict[str, Entity] = {entity.plural: entity for entity in ENTITIES}

# One CREATE TABLE statement per entity; CHECK constraints back up the API's own validation.
SCHEMA: Tuple[str, ...] = (
{{schema}}
)
'''

VALIDATION_PY = '''"""Validation of JSON request bodies against the entity definitions of {{app_name}}."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any, Callable, Dict, Mapping, Optional

from .models import Entity, Field

# SQLite stores integers in 64 bits; larger values would fail at insert time.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


class ValidationFailed(Exception):
    """Raised with a message per offending field when a payload does not fit its entity."""

    def __init__(self, errors: Dict[str, str]) -> None:
        super().__init__("invalid fields: " + ", ".join(sorted(errors)))
        self.errors = errors


def _string(field: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if field.max_length is not None and len(value) > field.max_length:
        raise ValueError("must be at most %d characters" % field.max_length)
    return value


def _integer(field: Field, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError("must be between %d and %d" % (INT_MIN, INT_MAX))
    return value


def _float(field: Field, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def _boolean(field: Field, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _date(field: Field, value: Any) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise ValueError("must be a date in ISO format (YYYY-MM-DD)")


def _datetime(field: Field, value: Any) -> str:
    try:
        return datetime.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise ValueError("must be a date and time in ISO format (YYYY-MM-DDTHH:MM:SS)")


CONVERTERS: Dict[str, Callable[[Field, Any], Any]] = {
    "string": _string,
    "text": _string,
    "integer": _integer,
    "float": _float,
    "boolean": _boolean,
    "date": _date,
    "datetime": _datetime,
}


def validate_payload(
    entity: Entity, payload: Mapping[str, Any], current: Optional[Mapping[str, Any]] = None
) -> Dict[str, Any]:
    """Return the values to store; on update (``current`` given) omitted fields keep their value."""
    errors: Dict[str, str] = {}
    # "id" is accepted and ignored so clients can send back a record they received.
    for name in sorted(set(payload) - set(entity.field_names) - {"id"}):
        errors[name] = "unknown field"
    values: Dict[str, Any] = {}
    for field in entity.fields:
        if field.name not in payload and current is not None:
            values[field.name] = current[field.name]
            continue
        value = payload.get(field.name)
        if value is None:
            if field.required:
                errors[field.name] = "is required"
            values[field.name] = None
            continue
        try:
            values[field.name] = CONVERTERS[field.type](field, value)
        except ValueError as exc:
            errors[field.name] = str(exc)
    if errors:
        raise ValidationFailed(errors)
    return values
'''

STORE_PY = '''"""SQLite storage of {{app_name}}: one table per entity, one short-lived connection per call."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from typing import Any, Dict, List, Optional, Tuple

from .models import SCHEMA, Entity

_UNIQUE_FAILURE = re.compile(r"UNIQUE constraint failed: \\w+\\.(\\w+)")


class Conflict(Exception):
    """Raised when a write would duplicate the value of a unique field."""

    def __init__(self, field: str) -> None:
        super().__init__("%s must be unique" % field)
        self.field = field


def _quote(identifier: str) -> str:
    return '"%s"' % identifier


def _columns(entity: Entity) -> str:
    return ", ".join(_quote(name) for name in ("id",) + entity.field_names)


def connect(db_path: str) -> sqlite3.Connection:
    """Open a connection whose rows can be read by column name."""
    conn = sqlite3.connect(db_path, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def init_db(db_path: str) -> None:
    """Create every table that does not exist yet."""
    with closing(connect(db_path)) as conn, conn:
        for statement in SCHEMA:
            conn.execute(statement)


def _record(entity: Entity, row: sqlite3.Row) -> Dict[str, Any]:
    record: Dict[str, Any] = {"id": row["id"]}
    for field in entity.fields:
        value = row[field.name]
        if field.type == "boolean" and value is not None:
            value = bool(value)
        record[field.name] = value
    return record


def _fetch(conn: sqlite3.Connection, entity: Entity, record_id: int) -> Optional[sqlite3.Row]:
    sql = "SELECT %s FROM %s WHERE id = ?" % (_columns(entity), _quote(entity.plural))
    return conn.execute(sql, (record_id,)).fetchone()


def _conflict(exc: sqlite3.IntegrityError) -> Exception:
    match = _UNIQUE_FAILURE.search(str(exc))
    return Conflict(match.group(1)) if match else exc


def list_records(db_path: str, entity: Entity, limit: int, offset: int) -> Tuple[List[Dict[str, Any]], int]:
    """Return one page of records in id order, and the total count."""
    table = _quote(entity.plural)
    with closing(connect(db_path)) as conn:
        total = conn.execute("SELECT COUNT(*) FROM %s" % table).fetchone()[0]
        sql = "SELECT %s FROM %s ORDER BY id LIMIT ? OFFSET ?" % (_columns(entity), table)
        rows = conn.execute(sql, (limit, offset)).fetchall()
    return [_record(entity, row) for row in rows], total


def get_record(db_path: str, entity: Entity, record_id: int) -> Optional[Dict[str, Any]]:
    """Return the record with this id, or None."""
    with closing(connect(db_path)) as conn:
        row = _fetch(conn, entity, record_id)
    return None if row is None else _record(entity, row)


def create_record(db_path: str, entity: Entity, values: Dict[str, Any]) -> Dict[str, Any]:
    """Insert a record and return it with its new id."""
    names = list(values)
    sql = "INSERT INTO %s (%s) VALUES (%s)" % (
        _quote(entity.plural),
        ", ".join(_quote(name) for name in names),
        ", ".join("?" for _ in names),
    )
    try:
        with closing(connect(db_path)) as conn, conn:
            record_id = conn.execute(sql, [values[name] for name in names]).lastrowid
            return _record(entity, _fetch(conn, entity, record_id))
    except sqlite3.IntegrityError as exc:
        raise _conflict(exc) from exc


def update_record(db_path: str, entity: Entity, record_id: int, values: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Overwrite the given fields of a record; None if it does not exist."""
    assignments = ", ".join("%s = ?" % _quote(name) for name in values)
    sql = "UPDATE %s SET %s WHERE id = ?" % (_quote(entity.plural), assignments)
    try:
        with closing(connect(db_path)) as conn, conn:
            conn.execute(sql, list(values.values()) + [record_id])
            row = _fetch(conn, entity, record_id)
    except sqlite3.IntegrityError as exc:
        raise _conflict(exc) from exc
    return None if row is None else _record(entity, row)


def delete_record(db_path: str, entity: Entity, record_id: int) -> bool:
    """Delete a record; False if it did not exist."""
    with closing(connect(db_path)) as conn, conn:
        cursor = conn.execute("DELETE FROM %s WHERE id = ?" % _quote(entity.plural), (record_id,))
        return cursor.rowcount > 0
'''
